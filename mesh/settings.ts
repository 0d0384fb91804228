import { isIP } from "node:net";
import { invalidArgument } from "./errors";
import { DEFAULT_LOG_LEVEL } from "./logger";
import { loadAuthorizationPolicy } from "./authorization";
import type { MeshClientOptions } from "./client";
import { ZONE_PATTERN } from "./names";
import type { MeshServerOptions } from "./server";

/**
 * The environment variables a protomesh program reads. They are read once, at the program's edge,
 * by {@link loadSettings}; everything in the kit below takes plain options.
 */
export const SETTINGS_ENV = Object.freeze({
  controlPlane: "PROTOMESH_CONTROL_PLANE",
  zone: "PROTOMESH_ZONE",
  advertiseHost: "PROTOMESH_ADVERTISE_HOST",
  meshConfig: "PROTOMESH_MESH_CONFIG",
  logLevel: "PROTOMESH_LOG_LEVEL",
  adminAddress: "PROTOMESH_ADMIN_ADDRESS",
  tlsCaFile: "PROTOMESH_TLS_CA_FILE",
  tlsCertFile: "PROTOMESH_TLS_CERT_FILE",
  tlsKeyFile: "PROTOMESH_TLS_KEY_FILE",
  caKeyFile: "PROTOMESH_CA_KEY_FILE",
  xdsSocket: "PROTOMESH_XDS_SOCKET",
  healthAddress: "PROTOMESH_HEALTH_ADDRESS",
  host: "HOST",
  port: "PORT",
});

/** Log levels pino knows, in increasing verbosity; `silent` logs nothing. */
export const LOG_LEVELS = ["silent", "fatal", "error", "warn", "info", "debug", "trace"] as const;
/** Host a service binds when HOST is unset: loopback only. */
export const DEFAULT_HOST = "127.0.0.1";

/** A program's settings, typed and validated. */
export interface MeshSettings {
  /** The control plane, "host:port" (PROTOMESH_CONTROL_PLANE); set, servers register and clients dial services by name. */
  controlPlane: string | undefined;
  /** This process's zone, the xDS locality (PROTOMESH_ZONE); "" is the default locality. */
  zone: string;
  /** The address a server registers when it differs from the bound host (PROTOMESH_ADVERTISE_HOST). */
  advertiseHost: string | undefined;
  /** The mesh config file the control plane and `protomesh up` load (PROTOMESH_MESH_CONFIG). */
  meshConfigPath: string | undefined;
  /** pino level (PROTOMESH_LOG_LEVEL, default info). */
  logLevel: string;
  /** The admin HTTP port, "host:port" (PROTOMESH_ADMIN_ADDRESS): GET /metrics; unset, none (and no metrics). */
  adminAddress: string | undefined;
  /**
   * The workload's mTLS files (PROTOMESH_TLS_CA_FILE, PROTOMESH_TLS_CERT_FILE, PROTOMESH_TLS_KEY_FILE,
   * all three or none): set, its servers accept only mTLS from the mesh CA and its clients use it.
   */
  tls: { caFile: string; certFile: string; keyFile: string } | undefined;
  /** The mesh CA's key (PROTOMESH_CA_KEY_FILE), for the control plane to sign renewals with. */
  caKeyFile: string | undefined;
  /**
   * The control plane's plaintext unix socket for ADS (PROTOMESH_XDS_SOCKET; no registry, fault or
   * certificate API there): the control plane serves it, TypeScript clients read xDS from it when
   * the mesh runs on mTLS.
   */
  xdsSocket: string | undefined;
  /** A plaintext grpc.health.v1-only port, "host:port" (PROTOMESH_HEALTH_ADDRESS), for probes that cannot do mTLS. */
  healthAddress: string | undefined;
  /** Host to listen on (HOST, default 127.0.0.1). */
  host: string;
  /** Port to listen on (PORT); unset, the program's own default. */
  port: number | undefined;
}

// host:port, [v6]:port; the host a DNS name or an IP address.
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

/**
 * Reads the PROTOMESH_* variables, HOST and PORT from `env` into settings. An empty variable counts
 * as unset. A value that cannot be used is refused with INVALID_ARGUMENT naming the variable, e.g.
 * `PORT: must be an integer from 0 to 65535, got "http"`.
 */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): MeshSettings {
  const value = (name: string): string | undefined => {
    const text = env[name];
    return text === undefined || text === "" ? undefined : text;
  };
  const controlPlane = value(SETTINGS_ENV.controlPlane);
  if (controlPlane !== undefined && !isPort(HOST_PORT.exec(controlPlane)?.[3])) {
    throw invalidArgument(SETTINGS_ENV.controlPlane, `must be host:port, e.g. 127.0.0.1:50050, got ${JSON.stringify(controlPlane)}`);
  }
  const zone = value(SETTINGS_ENV.zone) ?? "";
  if (!ZONE_PATTERN.test(zone)) {
    throw invalidArgument(SETTINGS_ENV.zone, `must be a DNS label (lowercase letters, digits and '-'), got ${JSON.stringify(zone)}`);
  }
  const advertiseHost = value(SETTINGS_ENV.advertiseHost);
  if (advertiseHost !== undefined && isIP(advertiseHost) === 0) {
    throw invalidArgument(SETTINGS_ENV.advertiseHost, `must be an IPv4 or IPv6 address, got ${JSON.stringify(advertiseHost)}`);
  }
  const logLevel = value(SETTINGS_ENV.logLevel) ?? DEFAULT_LOG_LEVEL;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw invalidArgument(SETTINGS_ENV.logLevel, `must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logLevel)}`);
  }
  const adminAddress = value(SETTINGS_ENV.adminAddress);
  if (adminAddress !== undefined && !isPort(HOST_PORT.exec(adminAddress)?.[3], 0)) {
    throw invalidArgument(SETTINGS_ENV.adminAddress, `must be host:port, e.g. 127.0.0.1:9464, got ${JSON.stringify(adminAddress)}`);
  }
  const portText = value(SETTINGS_ENV.port);
  if (portText !== undefined && !isPort(portText, 0)) {
    throw invalidArgument(SETTINGS_ENV.port, `must be an integer from 0 to 65535, got ${JSON.stringify(portText)}`);
  }
  const tlsFileVariables = [SETTINGS_ENV.tlsCaFile, SETTINGS_ENV.tlsCertFile, SETTINGS_ENV.tlsKeyFile];
  const tlsFiles = tlsFileVariables.map(value);
  if (tlsFiles.some((file) => file !== undefined) && tlsFiles.some((file) => file === undefined)) {
    const missing = tlsFileVariables.filter((_name, index) => tlsFiles[index] === undefined);
    throw invalidArgument(missing[0], "must be set with the other PROTOMESH_TLS_* files (all three, or none for plaintext)");
  }
  const [caFile, certFile, keyFile] = tlsFiles;
  const caKeyFile = value(SETTINGS_ENV.caKeyFile);
  if (caKeyFile !== undefined && caFile === undefined) {
    throw invalidArgument(SETTINGS_ENV.caKeyFile, "needs PROTOMESH_TLS_CA_FILE and the workload's own PROTOMESH_TLS_* files");
  }
  const xdsSocket = value(SETTINGS_ENV.xdsSocket);
  if (xdsSocket !== undefined && !xdsSocket.startsWith("/")) {
    throw invalidArgument(SETTINGS_ENV.xdsSocket, `must be an absolute path, got ${JSON.stringify(xdsSocket)}`);
  }
  const healthAddress = value(SETTINGS_ENV.healthAddress);
  if (healthAddress !== undefined && !isPort(HOST_PORT.exec(healthAddress)?.[3], 0)) {
    throw invalidArgument(SETTINGS_ENV.healthAddress, `must be host:port, e.g. 127.0.0.1:8086, got ${JSON.stringify(healthAddress)}`);
  }
  return {
    controlPlane,
    tls: caFile !== undefined && certFile !== undefined && keyFile !== undefined ? { caFile, certFile, keyFile } : undefined,
    caKeyFile,
    xdsSocket,
    healthAddress,
    zone,
    advertiseHost,
    meshConfigPath: value(SETTINGS_ENV.meshConfig),
    logLevel,
    adminAddress,
    host: value(SETTINGS_ENV.host) ?? DEFAULT_HOST,
    port: portText === undefined ? undefined : Number(portText),
  };
}

/**
 * What a program's servers take from its settings: the control plane, zone, advertised host, admin
 * address and plaintext health port, the TLS files, and on mTLS `services.<service>.authorization`
 * from the mesh config file (validated, the error naming the field; none in the file, no policy).
 */
export function serverOptionsFrom(
  settings: MeshSettings,
  service: string,
): Pick<MeshServerOptions, "controlPlane" | "zone" | "advertiseHost" | "adminAddress" | "tls" | "healthAddress" | "authorization"> {
  const authorization = settings.tls && settings.meshConfigPath ? loadAuthorizationPolicy(settings.meshConfigPath, service) : undefined;
  return {
    controlPlane: settings.controlPlane,
    zone: settings.zone,
    advertiseHost: settings.advertiseHost,
    adminAddress: settings.adminAddress,
    tls: settings.tls,
    healthAddress: settings.healthAddress,
    ...(authorization ? { authorization } : {}),
  };
}

/** What a program's clients take from its settings: the control plane, zone, the TLS files and the xDS socket (as a unix: target). */
export function clientOptionsFrom(settings: MeshSettings): Pick<MeshClientOptions, "controlPlane" | "zone" | "tls" | "xdsServer"> {
  return {
    controlPlane: settings.controlPlane,
    zone: settings.zone,
    tls: settings.tls,
    xdsServer: settings.xdsSocket === undefined ? undefined : `unix://${settings.xdsSocket}`,
  };
}

/** The address to bind: the settings' host and port, else `defaultPort`; an IPv6 host in brackets. */
export function listenAddress(settings: Pick<MeshSettings, "host" | "port">, defaultPort: number): string {
  const port = settings.port ?? defaultPort;
  return settings.host.includes(":") ? `[${settings.host}]:${port}` : `${settings.host}:${port}`;
}

function isPort(text: string | undefined, min = 1): boolean {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return false;
  const port = Number(text);
  return port >= min && port <= 65535;
}
