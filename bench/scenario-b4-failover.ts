import { status } from "@grpc/grpc-js";
import { DEFAULT_LEASE_TTL_MS } from "../mesh/controlplane/registry";
import { BENCH_SERVICE, BenchControlPlane, MeshProcesses, OpenLoopClient, ReplicaHost } from "./bench-mesh";
import { epochMs, firstCallTo, issuedBetween } from "./call-record";
import type { CallRecord } from "./call-record";
import { compare } from "./pair-statistics";
import type { Pair } from "./pair-statistics";
import { sleep } from "./poll";
import type { ProcessSample } from "./process-probe";
import { comparisonRow, valueRow } from "./scenario";
import type { BenchContext, BuiltScenario, Row } from "./scenario";
import { NetworkNamespace, namespacesUnavailable } from "../test/support/netns";

/**
 * The replicas of B4, each its own process: r0 is killed and restarted, r1 frozen and continued,
 * r2 (in a network namespace of its own, when this machine can make one) cut off by a partition.
 */
const IDS = ["r0", "r1", "r2"] as const;
const KILLED = "r0";
const FROZEN = "r1";
const PARTITIONED = "r2";

/** Deadline of every call: 50× the replicas' median latency, so only a dead or frozen replica misses it. */
const DEADLINE_MS = 1_000;
/** Median latency of every replica (ms): a service that does some work, as in B3. */
const MEDIAN_MS = 20;

/** Calls issued this long before SIGSTOP may still be in flight on the replica when it freezes. */
const PRE_FREEZE_MS = 250;

const BASELINE_NAME = "plain grpc-js round_robin, static list";

/** The phases of one repetition. */
interface Timing {
  rateRps: number;
  /** Lease TTL in the mesh config; 0 keeps the control plane's default (10 s), as deployed. */
  leaseTtlMs: number;
  steadyMs: number;
  killPhaseMs: number;
  freezePhaseMs: number;
  restartWaitMs: number;
  /** How long r2's link drops every packet. */
  partitionPhaseMs: number;
}

function timing(context: BenchContext): Timing {
  // The killed replica's lease must expire before the freeze: its removal is an EDS update, and
  // any update makes the client rebuild its picker, which would route around the frozen replica
  // for a reason other than its own lease expiring.
  if (context.mode === "full") {
    const leaseMs = DEFAULT_LEASE_TTL_MS;
    return {
      rateRps: 200,
      leaseTtlMs: 0,
      steadyMs: 1_500,
      killPhaseMs: leaseMs + 1_500,
      freezePhaseMs: leaseMs + 2_500,
      restartWaitMs: 12_000,
      partitionPhaseMs: 6_000,
    };
  }
  return {
    rateRps: 100,
    leaseTtlMs: 500,
    steadyMs: 300,
    killPhaseMs: 800,
    freezePhaseMs: 1_200,
    restartWaitMs: 4_000,
    partitionPhaseMs: 1_200,
  };
}

/**
 * Repetitions in full mode: the minimum of 5. Each takes ~30 s, most of it waiting out two
 * lease TTLs; `--pairs` lowers it, never raises it past this.
 */
const FULL_MODE_REPETITIONS = 5;

/** What one client saw in one repetition. */
interface Outcome {
  killFailures: number;
  killCleanS: number;
  freezeFailures: number;
  /** Seconds from SIGSTOP to the last call issued to the frozen replica (≈ the phase when never routed around). */
  routedAroundS: number;
  restartToFirstCallS: number;
  /** The partition's figures; undefined when the machine cannot make a network namespace. */
  partition: PartitionOutcome | undefined;
  process: ProcessSample;
}

/** What one client saw of r2's partition. */
interface PartitionOutcome {
  failures: number;
  /** Seconds from the cut to the last call issued to r2 while cut (≈ the phase when never routed around). */
  routedAroundS: number;
  /** Seconds from the heal to the first call r2 answered. */
  healToFirstCallS: number;
}

/** The change times of one repetition (epoch ms). */
interface Events {
  killedAt: number;
  frozenAt: number;
  thawedAt: number;
  spawnedAt: number;
  waitedUntil: number;
  partition: { cutAt: number; healedAt: number; waitedUntil: number } | undefined;
}

/**
 * B4: failover. A control plane and three replica processes (r0–r2, 20 ms median) registered with
 * it; two clients calling GetProduct (idempotent) at a fixed rate each, side by side through the
 * same events: protomesh's createClient (xds:///) and, as the baseline, a plain grpc-js client with
 * round_robin over the static list of the same three addresses. Each repetition, with fresh
 * clients: steady traffic; SIGKILL r0 (failed calls, seconds until clean); SIGSTOP r1 for longer
 * than a lease TTL (seconds until calls stop timing out); SIGCONT r1; restart r0 on its port
 * (seconds from spawning the process to its first served call); then, when the machine can make
 * a network namespace (root and iproute2; test/support/netns.ts), r2 lives in one and its link is
 * cut (every packet dropped both ways: a blackhole) and healed (failed calls, seconds until calls
 * stop going to it, seconds from the heal to its first answer).
 */
/** Retries of UNAVAILABLE calls, as deploy/mesh.yaml configures the catalog. */
const MESH_RETRIES = 2;

export const B4: BuiltScenario = {
  name: "B4",
  title: "failover: SIGKILL then SIGSTOP one of 3 replicas; restart to first traffic; partition of one (network namespace)",
  run: async (context) => {
    const phases = timing(context);
    const processes = new MeshProcesses();
    const unavailable = namespacesUnavailable();
    if (unavailable) context.progress(`B4: no partition of ${PARTITIONED}: ${unavailable}`);
    const namespace = unavailable ? undefined : await NetworkNamespace.create();
    try {
      const controlPlane = processes.add(
        // The catalog's policy in deploy/mesh.yaml: UNAVAILABLE is retried (twice) on another replica.
        // With a namespace, on the host's end of its veth: r2 registers there.
        await BenchControlPlane.start(context, {
          policy: "round_robin",
          leaseTtlMs: phases.leaseTtlMs,
          retries: MESH_RETRIES,
          host: namespace?.hostAddress,
        }),
      );
      const startHost = (id: string, port = 0) =>
        ReplicaHost.start(context, {
          ids: [id],
          controlPlane: controlPlane.address,
          register: "auto",
          medianMs: MEDIAN_MS,
          seed: 4,
          ports: [port],
          namespace: id === PARTITIONED ? namespace : undefined,
        }).then((host) => processes.add(host));
      const hosts = new Map<string, ReplicaHost>();
      await Promise.all(IDS.map(async (id) => hosts.set(id, await startHost(id))));
      // r0 comes back on its port: one map of the replicas' addresses for every repetition.
      const addresses = Object.assign({}, ...IDS.map((id) => hosts.get(id)!.addresses)) as Record<string, string>;
      const staticTarget = `ipv4:${Object.keys(addresses).join(",")}`;
      const ports = new Map(IDS.map((id) => [id, hosts.get(id)!.ports[id]]));

      const pairs: Pair<Outcome>[] = [];
      const repetitions = Math.min(context.pairs, FULL_MODE_REPETITIONS);
      for (let repetition = 0; repetition < repetitions; repetition += 1) {
        await controlPlane.waitHealthy(IDS.length, 15_000);
        const [plain, mesh] = await Promise.all([
          OpenLoopClient.start(context, { kind: "plain", target: staticTarget }),
          OpenLoopClient.start(context, { kind: "mesh", target: BENCH_SERVICE, controlPlane: controlPlane.address }),
        ]).then((clients) => clients.map((client) => processes.add(client)));
        const totalMs =
          phases.steadyMs + phases.killPhaseMs + phases.freezePhaseMs + 2 * phases.restartWaitMs + phases.partitionPhaseMs + 30_000;
        const load = {
          rateRps: phases.rateRps,
          deadlineMs: DEADLINE_MS,
          maxDurationMs: totalMs,
          maxCalls: Math.ceil((phases.rateRps * totalMs) / 1000),
          seed: repetition,
          replicas: addresses,
        };
        const began = Math.min(...(await Promise.all([plain.begin(load), mesh.begin(load)])));
        await Promise.all([plain, mesh].map((client) => client.waitServedBy(IDS, began, 10_000)));
        await processes.mark([plain, mesh]);
        await sleep(phases.steadyMs);

        const killed = hosts.get(KILLED)!;
        const killedAt = processes.kill(killed);
        await sleep(phases.killPhaseMs);
        const frozen = hosts.get(FROZEN)!;
        const frozenAt = processes.freeze(frozen);
        await sleep(phases.freezePhaseMs);
        const thawedAt = processes.thaw(frozen);
        const spawnedAt = epochMs();
        hosts.set(KILLED, await startHost(KILLED, ports.get(KILLED)));
        await Promise.allSettled(
          [plain, mesh].map((client) => client.waitServedBy([KILLED], spawnedAt, phases.restartWaitMs)),
        );
        const waitedUntil = epochMs();
        let partition: Events["partition"];
        if (namespace) {
          await namespace.partition();
          const cutAt = epochMs();
          await sleep(phases.partitionPhaseMs);
          await namespace.heal();
          const healedAt = epochMs();
          await Promise.allSettled([plain, mesh].map((client) => client.waitServedBy([PARTITIONED], healedAt, phases.restartWaitMs)));
          partition = { cutAt, healedAt, waitedUntil: epochMs() };
        }
        const events: Events = { killedAt, frozenAt, thawedAt, spawnedAt, waitedUntil, partition };
        const samples = await processes.sample([plain, mesh]);
        const [plainRecords, meshRecords] = await Promise.all([plain.end(), mesh.end()]);
        await Promise.all([plain, mesh].map((client) => processes.stop(client)));
        const pair = {
          baseline: outcome(plainRecords, events, samples[0]),
          protomesh: outcome(meshRecords, events, samples[1]),
        };
        pairs.push(pair);
        context.progress(
          `B4 repetition ${repetition + 1}/${repetitions}: plain ${describe(pair.baseline)}; protomesh ${describe(pair.protomesh)}`,
        );
      }
      return rows(pairs, phases);
    } finally {
      // Every process first: nothing may still send to the namespace's address once it is gone.
      await processes.stopAll();
      namespace?.delete();
    }
  },
};

function outcome(records: readonly CallRecord[], events: Events, process: ProcessSample): Outcome {
  const isFailed = (record: CallRecord) => record.code !== 0;
  // A call issued just before SIGSTOP may be in flight on the frozen replica: it is the freeze's.
  const isFreezeCasualty = (record: CallRecord) =>
    record.code === status.DEADLINE_EXCEEDED &&
    record.t >= events.frozenAt - PRE_FREEZE_MS &&
    (record.replica === FROZEN || record.replica === "");
  // A call issued up to a deadline before the kill may have been in flight on the killed replica.
  const killFailures = issuedBetween(records, events.killedAt - DEADLINE_MS, events.frozenAt).filter(
    (record) => isFailed(record) && !isFreezeCasualty(record),
  );
  const freezeWindow = issuedBetween(records, events.frozenAt - PRE_FREEZE_MS, events.thawedAt);
  const freezeFailures = freezeWindow.filter((record) => isFailed(record) && (record.t >= events.frozenAt || isFreezeCasualty(record)));
  // Sent to the frozen replica: timed out, or answered by it only after SIGCONT.
  const toFrozen = issuedBetween(records, events.frozenAt, events.thawedAt).filter(
    (record) => record.replica === FROZEN || record.code === status.DEADLINE_EXCEEDED,
  );
  const first = firstCallTo(records, KILLED, events.spawnedAt);
  return {
    killFailures: killFailures.length,
    killCleanS: (Math.max(events.killedAt, ...killFailures.map((record) => record.t)) - events.killedAt) / 1000,
    freezeFailures: freezeFailures.length,
    routedAroundS: (Math.max(events.frozenAt, ...toFrozen.map((record) => record.t)) - events.frozenAt) / 1000,
    restartToFirstCallS: ((first?.t ?? events.waitedUntil) - events.spawnedAt) / 1000,
    partition: events.partition && partitionOutcome(records, events.partition),
    process,
  };
}

function partitionOutcome(records: readonly CallRecord[], partition: NonNullable<Events["partition"]>): PartitionOutcome {
  // A call issued up to a deadline before the cut may have been in flight over the link.
  const failures = issuedBetween(records, partition.cutAt - DEADLINE_MS, partition.healedAt).filter((record) => record.code !== 0);
  const toCut = issuedBetween(records, partition.cutAt, partition.healedAt).filter((record) => record.replica === PARTITIONED);
  const answered = issuedBetween(records, partition.healedAt).find((record) => record.replica === PARTITIONED && record.code === 0);
  return {
    failures: failures.length,
    routedAroundS: (Math.max(partition.cutAt, ...toCut.map((record) => record.t)) - partition.cutAt) / 1000,
    healToFirstCallS: ((answered?.t ?? partition.waitedUntil) - partition.healedAt) / 1000,
  };
}

function rows(pairs: readonly Pair<Outcome>[], phases: Timing): Row[] {
  const values = (metric: (run: Outcome) => number) => ({
    baseline: pairs.map((pair) => metric(pair.baseline)),
    protomesh: pairs.map((pair) => metric(pair.protomesh)),
  });
  const options = { baselineName: BASELINE_NAME };
  const load = `${phases.rateRps} calls/s per client, deadline ${DEADLINE_MS / 1000} s`;
  const leaseS = (phases.leaseTtlMs || DEFAULT_LEASE_TTL_MS) / 1000;
  const freezeS = phases.freezePhaseMs / 1000;
  return [
    valueRow("B4", `failed calls after SIGKILL of 1 of 3 replicas (${load})`, "calls", "lower", values((run) => run.killFailures), {
      ...options,
      goal: { text: "zero failed idempotent calls on SIGKILL", on: "protomesh", bound: 0, kind: "atMost" },
    }),
    valueRow("B4", "s from SIGKILL to the last failing call issued", "s", "lower", values((run) => run.killCleanS), options),
    valueRow("B4", `failed calls while 1 of 3 replicas is frozen (SIGSTOP for ${freezeS} s, lease TTL ${leaseS} s)`, "calls", "lower",
      values((run) => run.freezeFailures), options),
    valueRow("B4", `s from SIGSTOP until calls stop timing out (${freezeS} = not while frozen)`, "s", "lower",
      values((run) => run.routedAroundS), {
        ...options,
        goal: { text: "frozen replica routed around within 2 s", on: "protomesh", bound: 2, kind: "atMost" },
      }),
    valueRow("B4", `s from restarting the killed replica (spawn) to its first served call (${phases.restartWaitMs / 1000} = none by then)`,
      "s", "lower", values((run) => run.restartToFirstCallS), options),
    ...(pairs[0]?.protomesh.partition ? partitionRows(pairs, phases, options) : []),
    comparisonRow("B8", "client event-loop delay p99 (B4)", "ms", "lower", compare(pairs, (run) => run.process.eventLoopDelayP99Ms),
      options),
  ];
}

function partitionRows(pairs: readonly Pair<Outcome>[], phases: Timing, options: { baselineName: string }): Row[] {
  const values = (metric: (partition: PartitionOutcome) => number) => ({
    baseline: pairs.map((pair) => metric(pair.baseline.partition!)),
    protomesh: pairs.map((pair) => metric(pair.protomesh.partition!)),
  });
  const cutS = phases.partitionPhaseMs / 1000;
  return [
    valueRow("B4", `failed calls while 1 of 3 replicas is partitioned (its veth drops every packet for ${cutS} s)`, "calls", "lower",
      values((partition) => partition.failures), options),
    valueRow("B4", `s from the partition until calls stop going to it (${cutS} = not while cut)`, "s", "lower",
      values((partition) => partition.routedAroundS), {
        ...options,
        goal: { text: "partitioned replica routed around within 2 s", on: "protomesh", bound: 2, kind: "atMost" },
      }),
    valueRow("B4", `s from healing the link to the replica's first answer (${phases.restartWaitMs / 1000} = none by then)`, "s", "lower",
      values((partition) => partition.healToFirstCallS), options),
  ];
}

function describe(run: Outcome): string {
  return (
    `kill ${run.killFailures} failed, clean after ${run.killCleanS.toFixed(2)} s; ` +
    `freeze ${run.freezeFailures} failed, routed around after ${run.routedAroundS.toFixed(2)} s; ` +
    `restart to first call ${run.restartToFirstCallS.toFixed(2)} s` +
    (run.partition
      ? `; partition ${run.partition.failures} failed, routed around after ${run.partition.routedAroundS.toFixed(2)} s, ` +
        `heal to first answer ${run.partition.healToFirstCallS.toFixed(2)} s`
      : "")
  );
}
