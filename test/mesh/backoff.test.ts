import assert from "node:assert/strict";
import { Backoff, CONNECTION_BACKOFF } from "../../mesh/backoff";
import { fixedRandom } from "../support/manual-clock";

describe("backoff (gRPC connection backoff)", () => {
  it("starts at 1 s and grows ×1.6 up to the maximum, with gRPC's defaults", () => {
    assert.deepEqual(CONNECTION_BACKOFF, { initialMs: 1_000, multiplier: 1.6, jitter: 0.2, maxMs: 120_000 });
    const backoff = new Backoff({}, fixedRandom(0.5));
    const delays = Array.from({ length: 12 }, () => backoff.next());
    assert.deepEqual(delays.slice(0, 5), [1_000, 1_600, 2_560, 4_096, 6_554]);
    assert.equal(Math.max(...delays), 120_000);
    assert.equal(delays.at(-1), 120_000);
  });

  it("jitters every wait, the first included, by at most 20 % either way", () => {
    const low = new Backoff({}, fixedRandom(0));
    const high = new Backoff({}, fixedRandom(0.999_999));
    assert.deepEqual([low.next(), low.next()], [800, 1_280]);
    assert.deepEqual([high.next(), high.next()], [1_200, 1_920]);
  });

  it("starts over after reset", () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1_000 }, fixedRandom());
    backoff.next();
    backoff.next();
    backoff.reset();
    assert.equal(backoff.next(), 100);
  });

  it("refuses tunables that make no backoff, naming them", () => {
    assert.throws(() => new Backoff({ initialMs: 0 }), /backoff: needs initialMs > 0/);
    assert.throws(() => new Backoff({ jitter: 1 }), /0 <= jitter < 1/);
    assert.throws(() => new Backoff({ initialMs: 2_000, maxMs: 1_000 }), /maxMs >= initialMs/);
  });
});
