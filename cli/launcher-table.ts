/**
 * The table `protomesh up` prints: every endpoint as the control plane's registry sees it, plus
 * the control plane itself, with the pid and log file of the processes the launcher started; the
 * one-line summary of what changed between two tables; and the printer that shows each change.
 */
import { healthStateToJSON } from "../generated/ts/protomesh/registry/v1/registry";
import type { HealthState, Service } from "../generated/ts/protomesh/registry/v1/registry";

/** The column headings, in order. */
export const TABLE_COLUMNS = ["SERVICE", "ENDPOINT", "ZONE", "HEALTH", "PID", "LOG"] as const;
/** Shown in a cell that has no value (default zone, a process the launcher did not start). */
export const NO_VALUE = "-";

/** One line of the table. */
export interface TableRow {
  service: string;
  /** address:port */
  endpoint: string;
  zone: string;
  health: string;
  pid: string;
  log: string;
}

/** A process the launcher started, as the table names it. */
export interface TableProcess {
  address: string;
  pid: number | undefined;
  /** Its log file, as shown to the user. */
  log: string;
}

/**
 * The rows: the control plane first (`controlPlaneHealth` being what it reports over
 * grpc.health.v1, as it is not in its own registry), then every registered or static endpoint
 * by service name and port, with the health the control plane's prober gives it. PID and LOG come
 * from the process the launcher started at that address, else PID from the endpoint's metadata.
 */
export function tableRows(
  services: readonly Service[],
  controlPlane: TableProcess & { name: string },
  controlPlaneHealth: string,
  processes: readonly TableProcess[],
): TableRow[] {
  const byAddress = new Map(processes.map((proc) => [proc.address, proc]));
  const rows: TableRow[] = [
    {
      service: controlPlane.name,
      endpoint: controlPlane.address,
      zone: NO_VALUE,
      health: controlPlaneHealth,
      pid: String(controlPlane.pid ?? NO_VALUE),
      log: controlPlane.log,
    },
  ];
  for (const service of [...services].sort((a, b) => a.name.localeCompare(b.name))) {
    const endpoints = [...service.endpoints].sort((a, b) => (a.endpoint?.port ?? 0) - (b.endpoint?.port ?? 0));
    for (const status of endpoints) {
      const launched = byAddress.get(status.endpointId);
      const registeredPid = status.endpoint?.metadata.pid;
      rows.push({
        service: service.name,
        endpoint: status.endpointId,
        zone: status.endpoint?.zone || NO_VALUE,
        health: healthName(status.health),
        pid: String(launched?.pid ?? (registeredPid || NO_VALUE)),
        log: launched?.log ?? (status.isStatic ? "(static)" : NO_VALUE),
      });
    }
  }
  return rows;
}

/** "HEALTHY", "UNHEALTHY", "PENDING": the registry's HealthState without its prefix. */
export function healthName(health: HealthState): string {
  return healthStateToJSON(health).replace(/^HEALTH_STATE_/, "");
}

/** The table as aligned text, a heading line first, each line ending in a newline. */
export function formatTable(rows: readonly TableRow[]): string {
  const cells = [
    [...TABLE_COLUMNS],
    ...rows.map((row) => [row.service, row.endpoint, row.zone, row.health, row.pid, row.log]),
  ];
  const widths = cells[0].map((_, column) => Math.max(...cells.map((line) => line[column].length)));
  return cells.map((line) => line.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd() + "\n").join("");
}

/**
 * What changed from `before` to `after`, one phrase per endpoint: "catalog 127.0.0.1:50061 left",
 * "... joined (PENDING)", "... HEALTHY -> UNHEALTHY", "... pid 12 -> 34". Empty when nothing did.
 */
export function describeChanges(before: readonly TableRow[], after: readonly TableRow[]): string[] {
  const key = (row: TableRow) => `${row.service} ${row.endpoint}`;
  const old = new Map(before.map((row) => [key(row), row]));
  const now = new Map(after.map((row) => [key(row), row]));
  const changes: string[] = [];
  for (const [name, row] of old) {
    if (!now.has(name)) changes.push(`${name} left (was ${row.health})`);
  }
  for (const [name, row] of now) {
    const was = old.get(name);
    if (!was) {
      changes.push(`${name} joined (${row.health})`);
      continue;
    }
    if (was.health !== row.health) changes.push(`${name} ${was.health} -> ${row.health}`);
    if (was.pid !== row.pid) changes.push(`${name} pid ${was.pid} -> ${row.pid}`);
    if (was.zone !== row.zone) changes.push(`${name} zone ${was.zone} -> ${row.zone}`);
  }
  return changes;
}

/**
 * Prints the table once (`start`), then again, after a line naming what changed, each time
 * `update` finds the rows different from the last table printed; nothing after `stop`.
 */
export class TablePrinter {
  private shown: TableRow[] | undefined;
  private isStopped = false;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly rows: () => TableRow[],
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Prints the first table. */
  start(): void {
    this.shown = this.rows();
    this.out.write(formatTable(this.shown));
  }

  /** Called on every registry view: prints when a row changed. */
  update(): void {
    if (this.shown === undefined || this.isStopped) return;
    const rows = this.rows();
    const changes = describeChanges(this.shown, rows);
    if (changes.length === 0) return;
    this.shown = rows;
    this.out.write(`\n[${this.now().toTimeString().slice(0, 8)}] registry: ${changes.join("; ")}\n${formatTable(rows)}`);
  }

  /** No more tables (the launcher is stopping; replicas leaving is expected). */
  stop(): void {
    this.isStopped = true;
  }
}
