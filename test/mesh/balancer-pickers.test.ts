import assert from "node:assert/strict";
import { Metadata, experimental, status } from "@grpc/grpc-js";
import type { ReadyEndpoint } from "../../mesh/balancer-endpoint-list";
import { LeastRequestConfig, leastRequest, leastRequestPicker } from "../../mesh/balancer-least-request";
import type { InFlight } from "../../mesh/balancer-least-request";
import {
  DEFAULT_DECAY_MS,
  DEFAULT_ERROR_PENALTY_MS,
  DEFAULT_RTT_MS,
  EndpointLoad,
  P2cEwmaConfig,
  p2cEwma,
  p2cEwmaPicker,
  parseP2cEwmaSettings,
} from "../../mesh/balancer-p2c-ewma";
import type { P2cEwmaSettings } from "../../mesh/balancer-p2c-ewma";
import { MeshError } from "../../mesh/errors";
import { PeakEwma } from "../../mesh/peak-ewma";
import { register } from "../../mesh/register";

/**
 * Picker arithmetic with seeded randomness and a pinned clock. The child pickers are fakes of the
 * pickers grpc-js hands a policy (one per endpoint); each names its endpoint as the subchannel, so
 * a test reads which endpoint was picked. No grpc-js internals are stubbed.
 */

const PICK_ARGS = { metadata: new Metadata(), extraPickInfo: {} };

function childPicker(name: string): experimental.Picker {
  return {
    pick: () => ({
      pickResultType: experimental.PickResultType.COMPLETE,
      subchannel: { getAddress: () => name } as unknown as experimental.SubchannelInterface,
      status: null,
      onCallStarted: null,
      onCallEnded: null,
    }),
  };
}

function pickedName(result: experimental.PickResult): string {
  return result.subchannel!.getAddress();
}

/** A random source that returns `values` in turn (then the last one again). */
function sequence(...values: number[]): () => number {
  let index = 0;
  return () => values[Math.min(index++, values.length - 1)];
}

const SETTINGS: P2cEwmaSettings = { decayMs: 10_000, defaultRttMs: 10, errorPenaltyMs: 1_000 };

describe("peak EWMA (mesh/peak-ewma.ts)", () => {
  it("starts at the default RTT, jumps to a higher sample at once, and blends a lower one by 1 - e^(-Δt/τ)", () => {
    const ewma = new PeakEwma(1_000, 10, 0);
    assert.equal(ewma.estimate(0), 10);
    ewma.observe(50, 0);
    assert.equal(ewma.estimate(0), 50, "a peak replaces the estimate");
    ewma.observe(20, 1_000); // Δt = τ: keep e^-1 of the old
    const expected = 50 * Math.exp(-1) + 20 * (1 - Math.exp(-1));
    assert.ok(Math.abs(ewma.estimate(1_000) - expected) < 1e-9, `${ewma.estimate(1_000)} ≈ ${expected}`);
  });

  it("decays toward zero while no call ends, so that an endpoint avoided after a bad spell is tried again", () => {
    const ewma = new PeakEwma(1_000, 10, 0);
    ewma.observe(1_000, 0);
    assert.ok(Math.abs(ewma.estimate(2_000) - 1_000 * Math.exp(-2)) < 1e-9);
    assert.ok(ewma.estimate(10_000) < 1);
  });
});

describe("p2c_ewma picker (mesh/balancer-p2c-ewma.ts)", () => {
  before(() => register());
  function endpoints(now: number, ...rtts: number[]): ReadyEndpoint<EndpointLoad>[] {
    return rtts.map((rtt, index) => {
      const state = new EndpointLoad(SETTINGS, now);
      state.latency.observe(rtt, now);
      return { picker: childPicker(`e${index}`), state };
    });
  }

  it("draws two distinct endpoints and takes the one of lower latency × (in flight + 1)", () => {
    const ready = endpoints(0, 10, 30, 20);
    // random 0.0 → index 0; then 0.99 of the remaining two → index 2.
    let picker = p2cEwmaPicker(ready, SETTINGS, { now: () => 0, random: sequence(0, 0.99) });
    assert.equal(pickedName(picker.pick(PICK_ARGS)), "e0", "10 ms beats 20 ms");
    ready[0].state.outstanding = 2; // cost 10 × 3 = 30 > 20 × 1
    picker = p2cEwmaPicker(ready, SETTINGS, { now: () => 0, random: sequence(0, 0.99) });
    assert.equal(pickedName(picker.pick(PICK_ARGS)), "e2", "calls in flight count");
    // The same draw the other way round: the second index skips the first, so they never coincide.
    picker = p2cEwmaPicker(ready, SETTINGS, { now: () => 0, random: sequence(0.99, 0) });
    assert.equal(pickedName(picker.pick(PICK_ARGS)), "e2", "2 of 3, then 0 of the remaining two: e2 (20) beats e0 (30)");
  });

  it("never draws the same endpoint twice, so with two endpoints the cheaper always wins", () => {
    for (const draws of [[0, 0], [0.5, 0.5], [0.99, 0.99], [0.2, 0.7]]) {
      const ready = endpoints(0, 40, 10);
      const picker = p2cEwmaPicker(ready, SETTINGS, { now: () => 0, random: sequence(...draws) });
      assert.equal(pickedName(picker.pick(PICK_ARGS)), "e1", `draws ${draws.join(", ")}`);
    }
  });

  it("counts the picks of a burst before their calls start, and forgets picks that never start at the next turn", async () => {
    const ready = endpoints(0, 10, 10);
    const draws: number[] = [];
    for (let i = 0; i < 10; i += 1) draws.push(0, 0.99);
    const picker = p2cEwmaPicker(ready, SETTINGS, { now: () => 0, random: sequence(...draws) });
    const names = Array.from({ length: 10 }, () => pickedName(picker.pick(PICK_ARGS)));
    // grpc-js starts none of these calls in this turn: without counting picks, all ten would go to e0.
    assert.equal(names.filter((name) => name === "e0").length, 5, names.join(" "));
    assert.equal(ready[0].state.picked + ready[1].state.picked, 10);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual([ready[0].state.picked, ready[1].state.picked, ready[0].state.outstanding], [0, 0, 0], "never-started picks are forgotten");
  });

  it("counts a call in flight from its start and feeds its latency, floored by the error penalty on a server fault", () => {
    let now = 0;
    const ready = endpoints(0, 10);
    const picker = p2cEwmaPicker(ready, SETTINGS, { now: () => now, random: sequence(0) });
    const load = ready[0].state;

    const ok = picker.pick(PICK_ARGS);
    ok.onCallStarted!();
    assert.equal(load.outstanding, 1);
    now = 200;
    ok.onCallEnded!(status.OK, "", new Metadata());
    assert.equal(load.outstanding, 0);
    assert.equal(load.latency.estimate(200), 200, "a slower answer is the new peak");

    const failed = picker.pick(PICK_ARGS);
    failed.onCallStarted!();
    now = 201;
    failed.onCallEnded!(status.UNAVAILABLE, "fast failure", new Metadata());
    assert.equal(load.latency.estimate(201), SETTINGS.errorPenaltyMs, "a 1 ms failure counts as the penalty");

    const refused = picker.pick(PICK_ARGS);
    refused.onCallStarted!();
    now = 202;
    refused.onCallEnded!(status.INVALID_ARGUMENT, "caller's mistake", new Metadata());
    assert.ok(load.latency.estimate(202) < SETTINGS.errorPenaltyMs, "a caller's mistake is no server fault: no penalty");
  });

  it("hands on the child's own call callbacks", () => {
    const seen: string[] = [];
    const child: experimental.Picker = {
      pick: () => ({
        ...childPicker("e0").pick(PICK_ARGS),
        onCallStarted: () => seen.push("started"),
        onCallEnded: (code) => seen.push(`ended ${code}`),
      }),
    };
    const load = new EndpointLoad(SETTINGS, 0);
    const result = p2cEwmaPicker([{ picker: child, state: load }], SETTINGS, { now: () => 0, random: sequence(0) }).pick(PICK_ARGS);
    result.onCallStarted!();
    result.onCallEnded!(status.OK, "", new Metadata());
    assert.deepEqual(seen, ["started", "ended 0"]);
  });

  it("passes a queue or failure pick through untouched", () => {
    const queued: experimental.PickResult = {
      pickResultType: experimental.PickResultType.QUEUE,
      subchannel: null,
      status: null,
      onCallStarted: null,
      onCallEnded: null,
    };
    const picker = p2cEwmaPicker([{ picker: { pick: () => queued }, state: new EndpointLoad(SETTINGS, 0) }], SETTINGS);
    assert.equal(picker.pick(PICK_ARGS), queued);
  });

  describe("config", () => {
    it("takes Envoy PeakEwma's decay_time and default_rtt, and error_penalty, with Finagle's and Envoy's defaults", () => {
      assert.deepEqual(parseP2cEwmaSettings(undefined, "p2c_ewma"), {
        decayMs: DEFAULT_DECAY_MS,
        defaultRttMs: DEFAULT_RTT_MS,
        errorPenaltyMs: DEFAULT_ERROR_PENALTY_MS,
      });
      assert.deepEqual(parseP2cEwmaSettings({ decay_time: "5s", default_rtt: "0.020s", error_penalty: "0.5s" }, "p2c_ewma"), {
        decayMs: 5_000,
        defaultRttMs: 20,
        errorPenaltyMs: 500,
      });
    });

    const refusals: [unknown, string][] = [
      [{ decay_time: 10 }, 'p2c_ewma.decay_time: must be a duration such as "10s"'],
      [{ decay_time: "0s" }, "p2c_ewma.decay_time: must be a duration"],
      [{ default_rtt: "ten" }, "p2c_ewma.default_rtt: must be a duration"],
      [{ decay: "10s" }, "p2c_ewma.decay: unknown field (expected one of decay_time, default_rtt, error_penalty)"],
      [{ aggregation_interval: "0.1s" }, "p2c_ewma.aggregation_interval: not a p2c_ewma setting: it tunes Envoy's cross-thread aggregation"],
      [{ penalty_value: 1e6 }, "p2c_ewma.penalty_value: not a p2c_ewma setting"],
      ["fast", "p2c_ewma: must be a mapping"],
    ];
    for (const [block, message] of refusals) {
      it(`refuses ${JSON.stringify(block)}, naming the field`, () => {
        assert.throws(() => parseP2cEwmaSettings(block, "p2c_ewma"), (error: unknown) => error instanceof MeshError && error.details.startsWith(message));
      });
    }

    it("reports a bad service config the grpc-js way, the policy named once", () => {
      assert.throws(
        () => experimental.parseLoadBalancingConfig({ p2c_ewma: { decay_time: 10 } }),
        (error: unknown) => (error as Error).message.startsWith('p2c_ewma: decay_time: must be a duration such as "10s"'),
      );
    });

    it("round-trips through the grpc-js config and the mesh config's encoding", () => {
      const settings = p2cEwma.parseConfig({ decay_time: "2s" }, "services.catalog.lb_config");
      const json = p2cEwma.grpcConfig(settings) as { p2c_ewma: object };
      assert.deepEqual(P2cEwmaConfig.createFromJson(json.p2c_ewma).settings, settings);
      assert.deepEqual(experimental.parseLoadBalancingConfig(json).toJsonObject(), json);
    });
  });
});

describe("least_request picker (mesh/balancer-least-request.ts, gRFC A48)", () => {
  function endpoints(...outstanding: number[]): ReadyEndpoint<InFlight>[] {
    return outstanding.map((count, index) => ({ picker: childPicker(`e${index}`), state: { outstanding: count } }));
  }

  it("takes the endpoint with the fewest calls in flight among choice_count draws, ties to the first drawn", () => {
    const ready = endpoints(3, 1, 2, 0);
    // Draws of 4 endpoints: 0.0 → e0, 0.3 → e1, 0.6 → e2, 0.9 → e3.
    assert.equal(pickedName(leastRequestPicker(ready, { choiceCount: 2 }, sequence(0, 0.6)).pick(PICK_ARGS)), "e2");
    assert.equal(pickedName(leastRequestPicker(ready, { choiceCount: 3 }, sequence(0, 0.6, 0.3)).pick(PICK_ARGS)), "e1");
    assert.equal(pickedName(leastRequestPicker(ready, { choiceCount: 2 }, sequence(0.9, 0)).pick(PICK_ARGS)), "e3");
    const tied = endpoints(1, 1);
    assert.equal(pickedName(leastRequestPicker(tied, { choiceCount: 2 }, sequence(0.6, 0)).pick(PICK_ARGS)), "e1");
  });

  it("counts a call from its start to its end", () => {
    const ready = endpoints(0);
    const result = leastRequestPicker(ready, { choiceCount: 2 }, sequence(0)).pick(PICK_ARGS);
    result.onCallStarted!();
    assert.equal(ready[0].state.outstanding, 1);
    result.onCallEnded!(status.OK, "", new Metadata());
    assert.equal(ready[0].state.outstanding, 0);
  });

  it("reads choiceCount or choice_count from a service config, caps it at 10 and refuses under 2, as A48 says", () => {
    assert.equal(LeastRequestConfig.createFromJson({}).settings.choiceCount, 2);
    assert.equal(LeastRequestConfig.createFromJson({ choiceCount: 3 }).settings.choiceCount, 3);
    assert.equal(LeastRequestConfig.createFromJson({ choice_count: 4 }).settings.choiceCount, 4);
    assert.equal(LeastRequestConfig.createFromJson({ choiceCount: 50 }).settings.choiceCount, 10);
    assert.throws(() => LeastRequestConfig.createFromJson({ choiceCount: 1 }), /^Error: choiceCount: must be an integer from 2/);
    assert.throws(() => experimental.parseLoadBalancingConfig({ least_request: { choiceCount: 1 } }), /least_request: choiceCount: must be an integer from 2/);
  });

  it("refuses a choice_count outside 2..10 in the mesh config, naming the field", () => {
    assert.deepEqual(leastRequest.parseConfig({ choice_count: 10 }, "services.catalog.lb_config"), { choiceCount: 10 });
    assert.throws(
      () => leastRequest.parseConfig({ choice_count: 11 }, "services.catalog.lb_config"),
      (error: unknown) => error instanceof MeshError && error.details === "services.catalog.lb_config.choice_count: must be an integer from 2 to 10",
    );
  });
});
