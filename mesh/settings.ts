import { isIP } from "node:net";
import { invalidArgument } from "./errors";
import { DEFAULT_LOG_LEVEL } from "./logger";
import { ZONE_PATTERN } from "./names";

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
  return {
    controlPlane,
    zone,
    advertiseHost,
    meshConfigPath: value(SETTINGS_ENV.meshConfig),
    logLevel,
    adminAddress,
    host: value(SETTINGS_ENV.host) ?? DEFAULT_HOST,
    port: portText === undefined ? undefined : Number(portText),
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
