import assert from "node:assert/strict";
import { Registry } from "../../../mesh/controlplane/registry";
import { catalogEndpoint } from "../../support/endpoints";
import { captureLog } from "../../support/log-capture";
import { ManualClock } from "../../support/manual-clock";

const ENDPOINT = catalogEndpoint();

describe("control plane: registry leases (pinned clock)", () => {
  let clock: ManualClock;
  let registry: Registry;
  let changes: number;

  beforeEach(() => {
    clock = new ManualClock();
    registry = new Registry({ logger: captureLog().logger, defaultLeaseTtlMs: 1_000, clock });
    changes = 0;
    registry.onChange(() => (changes += 1));
  });
  afterEach(() => registry.close());

  it("removes an endpoint exactly when its lease expires, not a millisecond before", () => {
    registry.register(ENDPOINT);
    clock.advance(999);
    assert.equal(registry.entries("catalog").length, 1);
    const before = changes;
    clock.advance(1);
    assert.equal(registry.entries("catalog").length, 0);
    assert.equal(changes, before + 1, "the expiry is announced");
  });

  it("restarts the lease's time to live on every keep-alive", () => {
    const { leaseId } = registry.register(ENDPOINT);
    for (let i = 0; i < 5; i += 1) {
      clock.advance(900);
      assert.equal(registry.keepAlive(leaseId), 1_000);
    }
    clock.advance(999);
    assert.equal(registry.entries("catalog").length, 1, "4.5 s after registering, alive thanks to keep-alives");
    clock.advance(1);
    assert.equal(registry.entries("catalog").length, 0);
    assert.throws(() => registry.keepAlive(leaseId), /NOT_FOUND/);
  });

  it("grants a new default TTL to registrations after it changes, and keeps the running leases' own", () => {
    const old = registry.register(ENDPOINT);
    registry.setDefaultLeaseTtl(5_000);
    const fresh = registry.register({ ...ENDPOINT, port: 50061 });
    assert.equal(old.leaseTtlMs, 1_000);
    assert.equal(fresh.leaseTtlMs, 5_000);
    clock.advance(1_000);
    assert.deepEqual(registry.entries("catalog").map((entry) => entry.endpoint.port), [50061]);
    clock.advance(4_000);
    assert.deepEqual(registry.entries("catalog"), []);
  });
});
