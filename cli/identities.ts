import * as fs from "node:fs";
import * as path from "node:path";
import { createMeshCa, issueWorkloadCertificate, workloadFiles } from "../mesh/identity";
import type { MeshCa } from "../mesh/identity";
import { CONTROL_PLANE_SERVICE } from "../mesh/names";
import { SETTINGS_ENV } from "../mesh/settings";
import type { MeshTlsOptions } from "../mesh/tls";
import type { MeshPlan, ProcessSpec } from "./launcher";

/** The trust domain of the mesh `protomesh up` runs: every SPIFFE ID is spiffe://protomesh.local/... */
export const STACK_TRUST_DOMAIN = "protomesh.local";
/** The directory under the run directory the CA, the certificates and the xDS socket live in. */
export const TLS_DIR = "tls";
/** The switch that runs the mesh plaintext, for local debugging only: PROTOMESH_PLAINTEXT=1. */
export const PLAINTEXT_ENV = "PROTOMESH_PLAINTEXT";
/** The operator identity grpcurl, grpc_health_probe and the launcher call with: spiffe://protomesh.local/admin/cli. */
export const ADMIN_NAME = "cli";
/** Lifetime of the workloads' certificates: an hour; the kits renew them through the control plane at half of it. */
export const STACK_WORKLOAD_TTL_MS = 60 * 60 * 1000;
/**
 * Lifetime of the control plane's own certificate and the operator's: a day. The control plane
 * renews its own at half of it with the CA key it holds; the operator's is not renewed (a new
 * `make up` issues a new one).
 */
export const STACK_LONG_TTL_MS = 24 * 60 * 60 * 1000;
/**
 * Host every process of the stack listens on: loopback. Only the control plane's certificate names
 * it (an IP SAN): Go and Python xDS clients verify the control plane by the host they dial (gRFC
 * A65), so no workload may carry it. A workload is verified by its DNS name (grpcurl -servername).
 */
const STACK_IP = "127.0.0.1";
/** File name stem of the operator identity `protomesh up` writes (admin.crt, admin.key). */
const ADMIN_FILE_STEM = "admin";

/** The mesh CA of a run and the files of its operator identity. */
export interface StackIdentities {
  dir: string;
  ca: MeshCa;
  /** The operator's files (spiffe://protomesh.local/admin/cli): grpcurl's -cacert/-cert/-key, the launcher's own calls. */
  admin: MeshTlsOptions;
  /** The plaintext ADS socket of the control plane, for the TypeScript clients (grpc-js-xds). */
  xdsSocket: string;
}

/** True when `env` asks for the plaintext mesh (PROTOMESH_PLAINTEXT=1, true or yes); anything else but unset is refused. */
export function isPlaintext(env: NodeJS.ProcessEnv): boolean {
  const value = env[PLAINTEXT_ENV];
  if (value === undefined || value === "" || value === "0" || value === "false") return false;
  if (value === "1" || value === "true" || value === "yes") return true;
  throw new TypeError(`${PLAINTEXT_ENV}: must be 1 (a plaintext mesh) or unset, got ${JSON.stringify(value)}`);
}

/**
 * Makes a fresh development CA under `runDir`/tls and gives every process of `plan` its identity:
 * the control plane spiffe://protomesh.local/service/control-plane (with the CA key, so that it
 * signs renewals, and the xDS socket), each replica its service's SPIFFE ID in files of its own
 * (<process>.crt, <process>.key: replicas renew apart), and writes an operator identity for the
 * commands a person runs. The environment of each spec gets its PROTOMESH_TLS_* files.
 */
export async function secureStack(plan: MeshPlan, runDir: string): Promise<StackIdentities> {
  const dir = path.join(runDir, TLS_DIR);
  fs.rmSync(dir, { recursive: true, force: true });
  // This user's alone: the CA key, every workload's key and the plaintext xDS socket live here.
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createMeshCa({ dir, trustDomain: STACK_TRUST_DOMAIN });
  const xdsSocket = stackXdsSocket(runDir);
  const filesOf = (certFile: string, keyFile: string): Record<string, string> => identityEnv(ca, { certFile, keyFile }, xdsSocket);
  const controlPlane = await issueWorkloadCertificate(ca, {
    service: CONTROL_PLANE_SERVICE,
    ttlMs: STACK_LONG_TTL_MS,
    dnsNames: [CONTROL_PLANE_SERVICE, "localhost"],
    ipAddresses: [STACK_IP],
  });
  plan.controlPlane.env = { ...plan.controlPlane.env, ...filesOf(controlPlane.certFile, controlPlane.keyFile), [SETTINGS_ENV.caKeyFile]: ca.keyFile };
  for (const spec of plan.stages.flat()) {
    const workload = await issueWorkloadCertificate(ca, {
      service: serviceOf(spec),
      fileStem: spec.name,
      ttlMs: STACK_WORKLOAD_TTL_MS,
      dnsNames: [serviceOf(spec)],
    });
    spec.env = { ...spec.env, ...filesOf(workload.certFile, workload.keyFile) };
  }
  const admin = await issueOperator(ca, ADMIN_NAME);
  return { dir, ca, admin, xdsSocket };
}

/** The environment that gives a process the identity in `workload`'s files: its PROTOMESH_TLS_* files and the control plane's xDS socket. */
export function identityEnv(ca: MeshCa, workload: { certFile: string; keyFile: string }, xdsSocket: string): Record<string, string> {
  return {
    [SETTINGS_ENV.tlsCaFile]: ca.certFile,
    [SETTINGS_ENV.tlsCertFile]: workload.certFile,
    [SETTINGS_ENV.tlsKeyFile]: workload.keyFile,
    [SETTINGS_ENV.xdsSocket]: xdsSocket,
  };
}

/** Issues the operator identity spiffe://protomesh.local/admin/<name> into admin.crt / admin.key (name "cli") or admin-<name>.crt / .key. */
export async function issueOperator(ca: MeshCa, name: string): Promise<MeshTlsOptions> {
  const certificate = await issueWorkloadCertificate(ca, {
    service: name,
    spiffeId: `spiffe://${ca.trustDomain}/admin/${name}`,
    fileStem: name === ADMIN_NAME ? ADMIN_FILE_STEM : `${ADMIN_FILE_STEM}-${name}`,
    ttlMs: STACK_LONG_TTL_MS,
  });
  return workloadFiles(ca, certificate);
}

/**
 * The CA of a running `protomesh up` in `runDir`/tls, for `protomesh identity` to issue a workload
 * started by hand; a TypeError saying what to do when there is none.
 */
export function stackCa(runDir: string): MeshCa {
  const dir = path.join(runDir, TLS_DIR);
  const certFile = path.join(dir, "ca.crt");
  const keyFile = path.join(dir, "ca.key");
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
    throw new TypeError(`no mesh CA in ${dir}: start the mesh with \`make up\` first (run this from the directory make up runs in)`);
  }
  return { trustDomain: STACK_TRUST_DOMAIN, certFile, keyFile, certPem: fs.readFileSync(certFile, "utf8") };
}

/** The control plane's plaintext ADS socket of the `protomesh up` run in `runDir` (runDir/tls/xds.sock). */
export function stackXdsSocket(runDir: string): string {
  return path.join(runDir, TLS_DIR, "xds.sock");
}

/**
 * The operator identity of the `make up` mesh running from `runDir` (runDir/tls/admin.*,
 * spiffe://protomesh.local/admin/cli, which deploy/mesh.yaml's policies admit) and its xDS socket;
 * undefined when there is none (a plaintext mesh, or none running).
 */
export function stackOperator(runDir: string): { tls: MeshTlsOptions; xdsSocket: string } | undefined {
  const dir = path.join(runDir, TLS_DIR);
  const tls = {
    caFile: path.join(dir, "ca.crt"),
    certFile: path.join(dir, `${ADMIN_FILE_STEM}.crt`),
    keyFile: path.join(dir, `${ADMIN_FILE_STEM}.key`),
  };
  if (![tls.caFile, tls.certFile, tls.keyFile].every((file) => fs.existsSync(file))) return undefined;
  return { tls, xdsSocket: stackXdsSocket(runDir) };
}

/** The mesh service of a replica's process name ("catalog-0" → "catalog"). */
function serviceOf(spec: ProcessSpec): string {
  return spec.name.replace(/-\d+$/, "");
}
