import type { Service } from "../generated/ts/protomesh/registry/v1/registry";
import { HealthState } from "../generated/ts/protomesh/registry/v1/registry";
import type { CallOutcome } from "./b10-caller-process";
import type { ControlPlaneLog, ProcessSample } from "./b10-control-plane";
import type { LeaseEvent } from "./b10-lease-process";
import type { SubscriberEvent } from "./b10-subscriber-process";

/**
 * B10's figures from what one restart left behind: the control plane's log, the leases' logs,
 * every EDS each subscriber received, the caller's calls, /proc samples of the control plane and
 * the registry as listed at the end. Pure functions: the run (b10-registration-storm.ts) collects,
 * this counts.
 */

/** Everything recorded around one restart. Times are epoch ms. */
export interface RestartRecord {
  signal: NodeJS.Signals;
  killAt: number;
  exitAt: number;
  /** When the new control plane logged that it listens: "restart" in every figure. */
  listeningAt: number;
  /** End of the observation (the settle window after the mesh was whole, or the timeout). */
  endAt: number;
  /** Endpoint ids by service. */
  expected: Map<string, Set<string>>;
  log: ControlPlaneLog;
  samples: ProcessSample[];
  rssBeforeKillBytes: number;
  /** Connections the kernel dropped from a full accept queue between the kill and the mesh whole (system-wide). */
  listenOverflows: number;
  /** Busy share (0–1) of each core of the machine from the restart until the mesh was whole, whoever ran there. */
  coresBusy: number[];
  leaseEvents: LeaseEvent[];
  /** Each subscriber's service and its events since the kill; each was whole at the kill. */
  subscribers: Array<{ service: string; events: SubscriberEvent[] }>;
  /** The caller's calls in the seconds before the kill, and from the kill on. */
  callsBefore: CallOutcome[];
  calls: CallOutcome[];
  /** The registry listed at the end; undefined when the control plane did not answer. */
  registry: Service[] | undefined;
}

/** The figures of one restart. Durations in ms from `listeningAt` unless named otherwise. */
export interface RestartFigures {
  signal: NodeJS.Signals;
  isWhole: boolean;
  exitToListeningMs: number;
  allRegisteredMs: number;
  allHealthyMs: number;
  wholeAtSubscribersMs: number;
  killToWholeMs: number;
  registerCalls: number;
  registerFailures: number;
  keepAliveFailures: number;
  leasesLost: number;
  mostFailuresInARow: number;
  registerPeakPerS: number;
  registerMeanPerS: number;
  /** Register calls (answered or failed, as the leases saw them) per 250 ms from the restart on. */
  registersPer250Ms: number[];
  cpCpuMs: number;
  cpCpuMeanPercent: number;
  cpCpuPeakPercent: number;
  cpRssBeforeKillMb: number;
  cpRssPeakMb: number;
  listenOverflows: number;
  /** How busy each core was, restart → whole (%), the control plane's and every other process's work. */
  coresBusyPercent: number[];
  /** Endpoints that left a subscriber's EDS or turned UNHEALTHY there between the kill and its being whole again. */
  stormLosses: number;
  fewestHealthyListed: number;
  fewestHealthyOf: number;
  subscribersThatLostNone: number;
  subscribers: number;
  edsHeldBack: number;
  /** Endpoints that left a subscriber's EDS or turned UNHEALTHY after it was whole again. */
  flapsAfterWhole: number;
  registryUnhealthyAfterWhole: number;
  leasesExpired: number;
  missing: number;
  unexpected: number;
  duplicated: number;
  calls: number;
  callsFailed: number;
  /** Calls issued while no control plane was up (kill → listening), and how many of them failed: the client's cached endpoints at work. */
  callsWhileDown: number;
  callsFailedWhileDown: number;
  /** Failed calls that were never sent to an endpoint (no endpoint picked before the deadline); the others reached one that did not answer in time. */
  callsFailedUnsent: number;
  failedCodes: Record<string, number>;
  /** Largest share of a window's calls that went to one endpoint, during the storm and before the kill. */
  peakShareOnOneEndpoint: number;
  steadyShareOnOneEndpoint: number;
  /** Calls the caller issued per second before the kill, and in its slowest second of the storm (a starved caller issues fewer). */
  callsPerSSteady: number;
  fewestCallsInAStormSecond: number;
}

const SLIDING_WINDOW_MS = 1_000;
const CPU_PEAK_WINDOW_MS = 500;
/** Windows of the caller's calls (20 at its default 20 calls/s) in which the top endpoint's share is taken. */
const SHARE_WINDOW_MS = 1_000;
/** Fewer answered calls than this in a window say nothing of a share. */
const SHARE_MIN_CALLS = 10;
const TIMELINE_STEP_MS = 250;

/**
 * The first time (epoch ms) every one of `ids` was in, replaying `changes` ([time, id, is in])
 * in time order: an id that goes out again (a lease expired, a probe failed) counts only once back.
 * NaN if that never happened.
 */
function firstTimeAllIn(changes: ReadonlyArray<[number, string, boolean]>, ids: ReadonlySet<string>): number {
  const isIn = new Set<string>();
  for (const [atMs, id, isNowIn] of [...changes].sort((a, b) => a[0] - b[0])) {
    if (!ids.has(id)) continue;
    if (isNowIn) isIn.add(id);
    else isIn.delete(id);
    if (isIn.size === ids.size) return atMs;
  }
  return Number.NaN;
}

/** How many of `times` fall in each `stepMs` from `origin` (earlier ones in the first). */
function histogram(times: readonly number[], origin: number, stepMs: number): number[] {
  const counts: number[] = [];
  for (const atMs of times) {
    const step = Math.max(0, Math.floor((atMs - origin) / stepMs));
    while (counts.length <= step) counts.push(0);
    counts[step] += 1;
  }
  return counts;
}

/** Fewest of `times` in any whole window of `windowMs` from `from` to `to` (NaN when none fits). */
function fewestPerWindow(times: readonly number[], from: number, to: number, windowMs: number): number {
  const windows = Math.floor((to - from) / windowMs);
  if (windows < 1) return Number.NaN;
  const counts = histogram(times, from, windowMs).slice(0, windows);
  while (counts.length < windows) counts.push(0);
  return Math.min(...counts);
}

/** Most events of `times` within any window of `windowMs`. */
export function peakInWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let peak = 0;
  for (let start = 0, end = 0; end < sorted.length; end++) {
    while (sorted[end] - sorted[start] >= windowMs) start++;
    peak = Math.max(peak, end - start + 1);
  }
  return peak;
}

/** CPU ms the process used between two times, read off its samples (the nearest at or after each). */
function cpuBetween(samples: readonly ProcessSample[], from: number, to: number): { cpuMs: number; wallMs: number } {
  const start = samples.find((sample) => sample.atMs >= from) ?? samples[0];
  const end = samples.find((sample) => sample.atMs >= to) ?? samples[samples.length - 1];
  return { cpuMs: end.cpuMs - start.cpuMs, wallMs: end.atMs - start.atMs };
}

interface SubscriberFigures {
  wholeAt: number;
  losses: number;
  fewestHealthy: number;
  flaps: number;
  held: number;
  duplicates: number;
}

/** Replays one subscriber's EDS from the whole set it held at the kill. */
function replaySubscriber(events: readonly SubscriberEvent[], expected: ReadonlySet<string>, listeningAt: number): SubscriberFigures {
  const endpoints = new Map([...expected].map((id) => [id, "HEALTHY"]));
  const figures: SubscriberFigures = { wholeAt: Number.NaN, losses: 0, fewestHealthy: expected.size, flaps: 0, held: 0, duplicates: 0 };
  for (const event of events) {
    if (event.kind === "held") figures.held += 1;
    if (event.kind !== "eds") continue;
    const isWholeBefore = !Number.isNaN(figures.wholeAt);
    for (const [id, before, after] of event.changes) {
      if (after === "") endpoints.delete(id);
      else endpoints.set(id, after);
      if (before === "HEALTHY" && after !== "HEALTHY") {
        if (isWholeBefore) figures.flaps += 1;
        else figures.losses += 1;
      }
    }
    figures.duplicates += event.duplicates;
    const healthy = [...endpoints.values()].filter((health) => health === "HEALTHY").length;
    if (!isWholeBefore) {
      figures.fewestHealthy = Math.min(figures.fewestHealthy, healthy);
      const isWhole = endpoints.size === expected.size && healthy === expected.size && [...endpoints.keys()].every((id) => expected.has(id));
      if (isWhole && event.atMs >= listeningAt) figures.wholeAt = event.atMs;
    }
  }
  return figures;
}

/** The largest share of one window's answered calls that went to a single endpoint. */
function topEndpointShare(calls: readonly CallOutcome[], origin: number): number {
  const byWindow = new Map<number, Map<string, number>>();
  for (const [issuedAt, code, peer] of calls) {
    if (code !== 0) continue;
    const window = Math.floor((issuedAt - origin) / SHARE_WINDOW_MS);
    const peers = byWindow.get(window) ?? new Map<string, number>();
    peers.set(peer, (peers.get(peer) ?? 0) + 1);
    byWindow.set(window, peers);
  }
  let share = 0;
  for (const peers of byWindow.values()) {
    const total = [...peers.values()].reduce((sum, n) => sum + n, 0);
    if (total >= SHARE_MIN_CALLS) share = Math.max(share, Math.max(...peers.values()) / total);
  }
  return share;
}

/** The registry at the end against the expected endpoints: missing, unexpected, listed twice, not HEALTHY (NaN when unlisted). */
function registryCheck(registry: readonly Service[] | undefined, expected: Map<string, Set<string>>) {
  if (!registry) return { missing: Number.NaN, unexpected: Number.NaN, duplicated: Number.NaN, unhealthy: Number.NaN };
  const seen = new Set<string>();
  let duplicated = 0;
  let unexpected = 0;
  let unhealthy = 0;
  for (const service of registry) {
    for (const status of service.endpoints) {
      const key = `${service.name}/${status.endpointId}`;
      if (seen.has(key)) duplicated += 1;
      seen.add(key);
      if (!expected.get(service.name)?.has(status.endpointId)) unexpected += 1;
      if (status.health !== HealthState.HEALTH_STATE_HEALTHY) unhealthy += 1;
    }
  }
  let missing = 0;
  for (const [service, ids] of expected) for (const id of ids) if (!seen.has(`${service}/${id}`)) missing += 1;
  return { missing, unexpected, duplicated, unhealthy };
}

/** Counts everything B10 reports about one restart. */
export function restartFigures(record: RestartRecord): RestartFigures {
  const { listeningAt, killAt, expected, log } = record;
  const allIds = new Set([...expected].flatMap(([service, ids]) => [...ids].map((id) => `${service}/${id}`)));
  const registrations: Array<[number, string, boolean]> = [
    ...log.registered.map(([atMs, service, id]): [number, string, boolean] => [atMs, `${service}/${id}`, true]),
    ...log.expired.map(([atMs, service, id]): [number, string, boolean] => [atMs, `${service}/${id}`, false]),
  ];
  const allRegisteredAt = firstTimeAllIn(registrations, allIds);
  const allHealthyAt = firstTimeAllIn(log.health.map(([atMs, service, id, isHealthy]) => [atMs, `${service}/${id}`, isHealthy]), allIds);

  const subscribers = record.subscribers.map((subscriber) =>
    replaySubscriber(subscriber.events, expected.get(subscriber.service) ?? new Set(), listeningAt),
  );
  const wholeAt = Math.max(allHealthyAt, ...subscribers.map((subscriber) => subscriber.wholeAt));
  const isWhole = Number.isFinite(wholeAt);
  const stormEnd = isWhole ? wholeAt : record.endAt;

  const leaseEvents = record.leaseEvents.filter((event) => event.atMs >= killAt);
  const registerTimes = leaseEvents.filter((event) => event.kind === "registered" || event.kind === "registerFailed").map((event) => event.atMs);
  const failuresInARow = new Map<number, number>();
  let mostFailuresInARow = 0;
  for (const event of leaseEvents) {
    if (event.kind === "registered") failuresInARow.set(event.g, 0);
    if (event.kind === "registerFailed" || event.kind === "keepAliveFailed") {
      const failures = (failuresInARow.get(event.g) ?? 0) + 1;
      failuresInARow.set(event.g, failures);
      mostFailuresInARow = Math.max(mostFailuresInARow, failures);
    }
  }
  const count = (kind: LeaseEvent["kind"]) => leaseEvents.filter((event) => event.kind === kind).length;
  const registerSpanS = registerTimes.length > 1 ? (Math.max(...registerTimes) - Math.min(...registerTimes)) / 1000 : Number.NaN;

  const cpu = record.samples.length > 1 ? cpuBetween(record.samples, listeningAt, stormEnd) : { cpuMs: Number.NaN, wallMs: Number.NaN };
  let cpuPeak = 0;
  const stormSamples = record.samples.filter((sample) => sample.atMs >= listeningAt && sample.atMs <= stormEnd + CPU_PEAK_WINDOW_MS);
  for (let i = 0; i < stormSamples.length; i++) {
    const end = stormSamples.find((sample) => sample.atMs >= stormSamples[i].atMs + CPU_PEAK_WINDOW_MS);
    if (end) cpuPeak = Math.max(cpuPeak, (end.cpuMs - stormSamples[i].cpuMs) / (end.atMs - stormSamples[i].atMs));
  }
  const rssPeak = Math.max(0, ...stormSamples.map((sample) => sample.rssBytes));

  const check = registryCheck(record.registry, expected);
  const stormCalls = record.calls.filter(([issuedAt]) => issuedAt >= killAt && issuedAt <= stormEnd);
  const failedCodes: Record<string, number> = {};
  for (const [, code] of record.calls) if (code !== 0) failedCodes[String(code)] = (failedCodes[String(code)] ?? 0) + 1;
  const fewest = subscribers.reduce(
    (worst, subscriber, index) => {
      const of = expected.get(record.subscribers[index].service)?.size ?? 0;
      return subscriber.fewestHealthy / Math.max(1, of) < worst.listed / Math.max(1, worst.of) ? { listed: subscriber.fewestHealthy, of } : worst;
    },
    { listed: Number.POSITIVE_INFINITY, of: 1 },
  );
  const sum = (pick: (subscriber: SubscriberFigures) => number) => subscribers.reduce((total, subscriber) => total + pick(subscriber), 0);
  return {
    signal: record.signal,
    isWhole,
    exitToListeningMs: listeningAt - record.exitAt,
    allRegisteredMs: allRegisteredAt - listeningAt,
    allHealthyMs: allHealthyAt - listeningAt,
    wholeAtSubscribersMs: Math.max(...subscribers.map((subscriber) => subscriber.wholeAt)) - listeningAt,
    killToWholeMs: wholeAt - killAt,
    registerCalls: registerTimes.length,
    registerFailures: count("registerFailed"),
    keepAliveFailures: count("keepAliveFailed"),
    leasesLost: count("leaseLost"),
    mostFailuresInARow,
    registerPeakPerS: peakInWindow(registerTimes, SLIDING_WINDOW_MS),
    registerMeanPerS: registerTimes.length / registerSpanS,
    registersPer250Ms: histogram(registerTimes, listeningAt, TIMELINE_STEP_MS),
    cpCpuMs: cpu.cpuMs,
    cpCpuMeanPercent: (cpu.cpuMs / cpu.wallMs) * 100,
    cpCpuPeakPercent: cpuPeak * 100,
    cpRssBeforeKillMb: record.rssBeforeKillBytes / 2 ** 20,
    cpRssPeakMb: rssPeak / 2 ** 20,
    listenOverflows: record.listenOverflows,
    coresBusyPercent: record.coresBusy.map((share) => share * 100),
    stormLosses: sum((subscriber) => subscriber.losses),
    fewestHealthyListed: fewest.listed,
    fewestHealthyOf: fewest.of,
    subscribersThatLostNone: subscribers.filter((subscriber) => subscriber.losses === 0).length,
    subscribers: subscribers.length,
    edsHeldBack: sum((subscriber) => subscriber.held),
    flapsAfterWhole: sum((subscriber) => subscriber.flaps),
    registryUnhealthyAfterWhole: log.health.filter(([atMs, , , healthy]) => !healthy && atMs > wholeAt && atMs <= record.endAt).length + check.unhealthy,
    leasesExpired: log.expired.filter(([atMs]) => atMs <= record.endAt).length,
    missing: check.missing,
    unexpected: check.unexpected,
    duplicated: check.duplicated + sum((subscriber) => subscriber.duplicates),
    calls: record.calls.length,
    callsFailed: record.calls.filter(([, code]) => code !== 0).length,
    callsWhileDown: record.calls.filter(([issuedAt]) => issuedAt >= killAt && issuedAt < listeningAt).length,
    callsFailedWhileDown: record.calls.filter(([issuedAt, code]) => issuedAt >= killAt && issuedAt < listeningAt && code !== 0).length,
    callsFailedUnsent: record.calls.filter(([, code, peer]) => code !== 0 && !/^[\d[]/.test(peer)).length,
    failedCodes,
    peakShareOnOneEndpoint: topEndpointShare(stormCalls, killAt),
    steadyShareOnOneEndpoint: topEndpointShare(record.callsBefore, killAt),
    callsPerSSteady: record.callsBefore.length / Math.max(1, (Math.max(...record.callsBefore.map(([at]) => at)) - Math.min(...record.callsBefore.map(([at]) => at))) / 1000),
    fewestCallsInAStormSecond: fewestPerWindow(stormCalls.map(([issuedAt]) => issuedAt), killAt, stormEnd, SLIDING_WINDOW_MS),
  };
}
