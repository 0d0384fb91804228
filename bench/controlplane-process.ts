import { HealthState } from "../generated/ts/protomesh/registry/v1/registry";
import { parseMeshConfig } from "../mesh/controlplane/config";
import type { MeshConfig } from "../mesh/controlplane/config";
import { ControlPlane } from "../mesh/controlplane/control-plane";
import { createLogger } from "../mesh/logger";
import { KEY_HEADER } from "./call-record";
import { flag, serveControl } from "./control-channel";
import { ProcessProbe } from "./process-probe";

/**
 * Entry point of the control plane of the mesh scenarios (B3, B4, B7): protomesh's ControlPlane on
 * a free port of `--host` (127.0.0.1 unless a replica in a network namespace must reach it), with
 * a mesh config of one service: `--service NAME --policy LB [--lease-ttl-ms N] [--retries N]`
 * (0: the control plane's default lease; no retry policy).
 * With retries, UNAVAILABLE calls are retried as deploy/mesh.yaml does for the catalog. ring_hash hashes the request header the
 * open-loop client sets to a random key per call, so that it spreads one client's calls.
 * IPC ops: setPolicy, healthy (HEALTHY endpoints of the service), mark, sample, stop.
 */

/** The validated mesh config, built as the YAML a user would write and parsed by the real parser. */
export function benchMeshConfig(service: string, policy: string, leaseTtlMs: number, retries = 0): MeshConfig {
  const servicePolicy = {
    lb_policy: policy,
    ...(policy === "ring_hash" ? { lb_config: { hash_header: KEY_HEADER } } : {}),
    ...(retries > 0 ? { idempotent: true, retry: { retry_on: ["unavailable"], num_retries: retries } } : {}),
  };
  const document = { ...(leaseTtlMs > 0 ? { lease_ttl_ms: leaseTtlMs } : {}), services: { [service]: servicePolicy } };
  return parseMeshConfig(JSON.stringify(document));
}

async function main(): Promise<void> {
  const service = flag("service");
  const leaseTtlMs = Number(flag("lease-ttl-ms", "0"));
  const retries = Number(flag("retries", "0"));
  const controlPlane = new ControlPlane({
    logger: createLogger({ name: "bench-control-plane" }),
    config: benchMeshConfig(service, flag("policy", "round_robin"), leaseTtlMs, retries),
  });
  const probe = new ProcessProbe();
  const port = await controlPlane.listen(`${flag("host", "127.0.0.1")}:0`);
  serveControl(
    {
      setPolicy: (args) => controlPlane.setConfig(benchMeshConfig(service, (args as { policy: string }).policy, leaseTtlMs, retries)),
      healthy: () =>
        controlPlane.registry.entries(service).filter((entry) => entry.health === HealthState.HEALTH_STATE_HEALTHY).length,
      mark: () => probe.mark(),
      sample: () => probe.read(),
      stop: async () => {
        probe.close();
        await controlPlane.stop();
        setImmediate(() => process.exit(0));
      },
    },
    { port },
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench control plane failed: ${String(error)}\n`);
  process.exit(1);
});
