import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { EchoRequest, InteropServiceClient, InteropServiceService } from "../../generated/ts/protomesh/interop/v1/interop";
import type { InteropServiceServer } from "../../generated/ts/protomesh/interop/v1/interop";
import { createClient, createMeshCa, createServer, issueWorkloadCertificate, peerIdentity } from "../../mesh";
import type { MeshCa, MeshServer, MeshTlsOptions } from "../../mesh";
import { captureLog } from "../support/log-capture";
import { interopCall, interopCommand, interopService, requireLanguages } from "../support/interop";
import { freePorts } from "../support/ports";
import { waitFor } from "../support/wait";

/**
 * mTLS across the kits (issue 13): one mesh CA made by the TypeScript kit (mesh/identity.ts), its
 * workload certificates given to the Go and Python interop programs through PROTOMESH_TLS_* alone,
 * calls each way over STRICT mTLS, and a plaintext client refused. No control plane: a kit server
 * with TLS does not register yet.
 */

const TRUST_DOMAIN = "protomesh.test";

describe("polyglot mTLS: one mesh CA, TypeScript ↔ Go and Python over STRICT mTLS (test/polyglot)", function () {
  this.timeout(60_000);
  const { logger } = captureLog("error");
  let dir: string;
  let ca: MeshCa;
  const children: ChildProcess[] = [];
  const clients: InteropServiceClient[] = [];

  before(async function () {
    requireLanguages(this, "go", "python");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-polyglot-mtls-"));
    ca = await createMeshCa({ dir: path.join(dir, "ca"), trustDomain: TRUST_DOMAIN });
  });

  after(async () => {
    for (const client of clients) client.close();
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A workload certificate for `service`, as PROTOMESH_TLS_* and as the TypeScript kit's `tls`. */
  async function workload(service: string): Promise<{ env: Record<string, string>; tls: MeshTlsOptions }> {
    const issued = await issueWorkloadCertificate(ca, { service, dir: path.join(dir, service) });
    return {
      env: { PROTOMESH_TLS_CA_FILE: ca.certFile, PROTOMESH_TLS_CERT_FILE: issued.certFile, PROTOMESH_TLS_KEY_FILE: issued.keyFile },
      tls: { caFile: ca.certFile, certFile: issued.certFile, keyFile: issued.keyFile },
    };
  }

  const echo = (client: InteropServiceClient) =>
    new Promise<ServiceError | null>((resolve) =>
      client.echo(EchoRequest.fromPartial({}), new Metadata(), { deadline: Date.now() + 5_000 }, (error) => resolve(error)),
    );

  for (const language of ["go", "python"] as const) {
    it(`a TypeScript client calls the ${language} kit's server over mTLS, proving the server's SPIFFE ID; a plaintext client is refused`, async () => {
      const service = `interop-${language}`;
      const [port] = await freePorts(1);
      const server = await workload(service);
      const command = interopCommand(language, ["serve"]);
      const child = spawn(command.file, command.args, {
        env: { ...process.env, PORT: String(port), PROTOMESH_CONTROL_PLANE: "", PROTOMESH_LOG_LEVEL: "warn", INTEROP_SERVICE: service, ...server.env },
        stdio: ["ignore", "ignore", "pipe"],
      });
      children.push(child);
      let output = "";
      child.stderr!.setEncoding("utf8").on("data", (text: string) => (output = (output + text).slice(-4_000)));
      const caller = await workload("orders");
      // Dialled by its service name: the server must present spiffe://protomesh.test/service/interop-<language>.
      const client = createClient(InteropServiceClient, service, { fallbackTarget: `127.0.0.1:${port}`, logger, tls: caller.tls });
      clients.push(client);
      await waitFor(`the ${language} server answering over mTLS`, async () => {
        if (child.exitCode !== null) throw new Error(`${language} interop server exited ${child.exitCode}: ${output}`);
        return (await echo(client)) === null;
      }, 30_000, 200);
      assert.equal(await echo(client), null);

      const plaintext = createClient(InteropServiceClient, `127.0.0.1:${port}`, { logger });
      clients.push(plaintext);
      const startedAt = Date.now();
      assert.equal((await echo(plaintext))?.code, status.UNAVAILABLE, "a plaintext client is refused");
      assert.ok(Date.now() - startedAt < 1_000, `refused after ${Date.now() - startedAt} ms`);

      // The same server certificate does not pass for another service.
      const impostor = createClient(InteropServiceClient, "catalog", { fallbackTarget: `127.0.0.1:${port}`, logger, tls: caller.tls });
      clients.push(impostor);
      assert.equal((await echo(impostor))?.code, status.UNAVAILABLE, `the ${language} server is not the catalog`);
    });
  }

  it("the Go kit's client calls a TypeScript server over mTLS from PROTOMESH_TLS_* alone; the server sees its SPIFFE ID", async () => {
    const server = await workload("interop-typescript");
    const callers: string[] = [];
    let endpoint = "";
    const served = interopService(() => endpoint, () => {
      throw new Error("no relay in this test");
    }, logger);
    const handlers: InteropServiceServer = {
      ...served,
      echo: (call, callback) => {
        callers.push(peerIdentity(call) ?? "");
        served.echo(call, callback);
      },
    };
    const ts: MeshServer = createServer({ name: "interop-typescript", logger, tls: server.tls });
    ts.addService(InteropServiceService, handlers);
    const port = await ts.listen("127.0.0.1:0");
    endpoint = `127.0.0.1:${port}`;
    try {
      const goClient = await workload("interop-go");
      const [call] = await interopCall("go", "", {
        target: `127.0.0.1:${port}`,
        method: "/protomesh.interop.v1.InteropService/Echo",
        request: {},
        env: goClient.env,
      });
      assert.equal(call.codeName, "OK", JSON.stringify(call));
      assert.deepEqual(callers, [`spiffe://${TRUST_DOMAIN}/service/interop-go`]);
    } finally {
      await ts.drain(0);
    }
  });
});
