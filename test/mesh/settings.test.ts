import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { MeshError } from "../../mesh/errors";
import { listenAddress, loadSettings } from "../../mesh/settings";

describe("settings (the environment, read once at a program's edge)", () => {
  const address = (env: NodeJS.ProcessEnv) => listenAddress(loadSettings(env), 50051);

  it("binds loopback on the default port unless HOST or PORT say otherwise", () => {
    assert.equal(address({}), "127.0.0.1:50051");
    assert.equal(address({ PORT: "6000" }), "127.0.0.1:6000");
    assert.equal(address({ HOST: "0.0.0.0", PORT: "0" }), "0.0.0.0:0");
    assert.equal(address({ HOST: "::1" }), "[::1]:50051");
  });

  it("reads the PROTOMESH_* variables into typed settings, empty meaning unset", () => {
    const settings = loadSettings({
      PROTOMESH_CONTROL_PLANE: "127.0.0.1:50050",
      PROTOMESH_ZONE: "zone-a",
      PROTOMESH_ADVERTISE_HOST: "10.0.0.7",
      PROTOMESH_MESH_CONFIG: "deploy/mesh.yaml",
      PROTOMESH_LOG_LEVEL: "debug",
      PROTOMESH_ADMIN_ADDRESS: "127.0.0.1:51051",
      PROTOMESH_TLS_CA_FILE: "/tls/ca.crt",
      PROTOMESH_TLS_CERT_FILE: "/tls/orders-0.crt",
      PROTOMESH_TLS_KEY_FILE: "/tls/orders-0.key",
      PROTOMESH_CA_KEY_FILE: "/tls/ca.key",
      PROTOMESH_XDS_SOCKET: "/tls/xds.sock",
      PROTOMESH_HEALTH_ADDRESS: "127.0.0.1:8086",
      PORT: "",
    });
    assert.deepEqual(settings, {
      controlPlane: "127.0.0.1:50050",
      zone: "zone-a",
      advertiseHost: "10.0.0.7",
      meshConfigPath: "deploy/mesh.yaml",
      logLevel: "debug",
      adminAddress: "127.0.0.1:51051",
      tls: { caFile: "/tls/ca.crt", certFile: "/tls/orders-0.crt", keyFile: "/tls/orders-0.key" },
      caKeyFile: "/tls/ca.key",
      xdsSocket: "/tls/xds.sock",
      healthAddress: "127.0.0.1:8086",
      host: "127.0.0.1",
      port: undefined,
    });
    assert.equal(loadSettings({}).tls, undefined, "plaintext unless the files are given");
    assert.deepEqual(loadSettings({ PROTOMESH_CONTROL_PLANE: "" }).controlPlane, undefined);
    assert.equal(loadSettings({ PROTOMESH_CONTROL_PLANE: "[::1]:50050" }).controlPlane, "[::1]:50050");
    assert.equal(loadSettings({}).logLevel, "info");
  });

  const refusals: [NodeJS.ProcessEnv, RegExp][] = [
    [{ PORT: "http" }, /^PORT: must be an integer from 0 to 65535, got "http"$/],
    [{ PORT: "70000" }, /^PORT: must be/],
    [{ PROTOMESH_CONTROL_PLANE: "localhost" }, /^PROTOMESH_CONTROL_PLANE: must be host:port, e\.g\. 127\.0\.0\.1:50050, got "localhost"$/],
    [{ PROTOMESH_CONTROL_PLANE: "127.0.0.1:0" }, /^PROTOMESH_CONTROL_PLANE: must be host:port/],
    [{ PROTOMESH_ZONE: "Zone A" }, /^PROTOMESH_ZONE: must be a DNS label/],
    [{ PROTOMESH_ADVERTISE_HOST: "my-host" }, /^PROTOMESH_ADVERTISE_HOST: must be an IPv4 or IPv6 address/],
    [{ PROTOMESH_ADMIN_ADDRESS: "9464" }, /^PROTOMESH_ADMIN_ADDRESS: must be host:port, e\.g\. 127\.0\.0\.1:9464, got "9464"$/],
    [{ PROTOMESH_LOG_LEVEL: "verbose" }, /^PROTOMESH_LOG_LEVEL: must be one of silent, fatal, error, warn, info, debug, trace/],
    [{ PROTOMESH_TLS_CA_FILE: "/ca.crt", PROTOMESH_TLS_CERT_FILE: "/a.crt" }, /^PROTOMESH_TLS_KEY_FILE: must be set with the other PROTOMESH_TLS_\* files/],
    [{ PROTOMESH_CA_KEY_FILE: "/ca.key" }, /^PROTOMESH_CA_KEY_FILE: needs PROTOMESH_TLS_CA_FILE/],
    [{ PROTOMESH_XDS_SOCKET: "xds.sock" }, /^PROTOMESH_XDS_SOCKET: must be an absolute path, got "xds\.sock"$/],
    [{ PROTOMESH_HEALTH_ADDRESS: "8086" }, /^PROTOMESH_HEALTH_ADDRESS: must be host:port/],
  ];
  for (const [env, message] of refusals) {
    it(`refuses ${JSON.stringify(env)}, naming the variable`, () => {
      assert.throws(
        () => loadSettings(env),
        (error: unknown) => error instanceof MeshError && error.code === status.INVALID_ARGUMENT && message.test(error.details),
      );
    });
  }
});
