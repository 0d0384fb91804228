import { execFile, execFileSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { isCi } from "./tools";

/**
 * A network namespace joined to the host by a veth pair, for chaos tests that need a real link to
 * break: a process started in it (`command`) listens on {@link NetworkNamespace.address}, and the
 * host reaches it over the veth from {@link NetworkNamespace.hostAddress}. Faults are put on both
 * ends of the veth with iproute2's `tc`, so they hit every packet either way, as a sick link would.
 *
 * The kernels this runs on need not have netem (Firecracker's has no CONFIG_NET_SCH_NETEM), so the
 * faults are built from what every kernel with HTB and cls_bpf has: an HTB root with a pass class
 * and a drop class (a pfifo of length 0), and a classic-BPF filter that sends a random share of the
 * packets (the kernel's `ld rand`, SKF_AD_RANDOM) to the drop class. 100 % is a partition (a
 * blackhole: packets vanish, nothing is refused), less is a lossy link; TCP turns the loss into
 * retransmissions, i.e. latency from the RTO (200 ms and up) on the calls that hit it. A fixed
 * delay needs netem and is not offered.
 *
 * Names carry this process's pid (`pmchaos-<pid>-<n>`), so that a run killed before its cleanup
 * is swept by the next one ({@link sweepStaleNamespaces}). The subnet is a random /30 of
 * 10.213.0.0/16 that no route uses; an `unreachable` route of low priority for it outlives the
 * veth, so that nothing sent to the namespace's address can leave by the default route once the
 * veth is gone (the address is private: it must never reach the network).
 */

/** Prefix of every namespace these tests create. */
export const NAMESPACE_PREFIX = "pmchaos";
/** Priority of the guard route (lower than the veth's own, so it only counts once that is gone). */
const GUARD_ROUTE_METRIC = "4242";
/** The HTB class of the packets that pass, and the one whose pfifo of length 0 drops them. */
const PASS_CLASS = "1:10";
const DROP_CLASS = "1:20";
/** DROP_CLASS as the classid a cls_bpf program returns (major 1, minor 0x20). */
const DROP_CLASSID = 0x0001_0020;
/** Classic BPF `ld [SKF_AD_OFF + SKF_AD_RANDOM]`: a random u32 per packet (linux/filter.h). */
const LOAD_RANDOM = "32 0 0 4294963256";
/** How long one `ip` or `tc` command may take. */
const COMMAND_TIMEOUT_MS = 10_000;

let created = 0;

/** Runs `file` with `args` (no shell); rejects with the command and its stderr. */
function run(file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")} failed: ${stderr.trim() || error.message}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

/** Runs `file` with `args`, ignoring failure (cleanup of what may already be gone). */
function runQuietly(file: string, args: readonly string[]): void {
  try {
    execFileSync(file, args, { timeout: COMMAND_TIMEOUT_MS, stdio: "ignore" });
  } catch {
    // already gone
  }
}

/** Why network namespaces cannot be made here, or undefined when they can (root, `ip`, `tc`). */
export function namespacesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  for (const tool of ["ip", "tc"]) {
    try {
      execFileSync(tool, ["-V"], { stdio: "ignore" });
    } catch {
      return `${tool} (iproute2) is not installed: run \`make chaos-tools\``;
    }
  }
  return undefined;
}

/**
 * For a `before` hook of a suite that needs namespaces: under CI a missing tool or missing root
 * fails the suite; elsewhere the reason is printed and the suite is skipped (never silently).
 */
export function requireNamespaces(context: Mocha.Context): void {
  const reason = namespacesUnavailable();
  if (reason === undefined) return;
  if (isCi()) throw new Error(`${reason} (CI=true: a missing tool fails the run)`);
  process.stderr.write(`skipping "${context.test?.parent?.fullTitle() ?? "network namespaces"}": ${reason}\n`);
  context.skip();
}

/** A classic BPF program (tc's `bytecode` syntax) that sends `percent` % of packets to DROP_CLASS. */
export function dropProgram(percent: number): string {
  if (!(percent > 0 && percent <= 100)) throw new RangeError(`loss must be a percentage in (0, 100], got ${percent}`);
  const drop = `6 0 0 ${DROP_CLASSID}`;
  if (percent === 100) return `1,${drop}`;
  // A uniform u32 exceeds this for `percent` % of packets.
  const threshold = Math.floor((1 - percent / 100) * 2 ** 32);
  // ld rand; jgt #threshold ? drop : pass (return 0: no match, so the HTB default class).
  return `4,${LOAD_RANDOM},37 1 0 ${threshold},6 0 0 0,${drop}`;
}

/** Deletes the namespaces (and their veths) that runs of these tests left behind when killed. */
export function sweepStaleNamespaces(): void {
  let names: string[];
  try {
    names = execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").map((line) => line.split(" ")[0]);
  } catch {
    return;
  }
  for (const name of names) {
    const match = new RegExp(`^${NAMESPACE_PREFIX}-(\\d+)-(\\d+)$`).exec(name);
    if (!match || isAlive(Number(match[1]))) continue;
    for (const pid of namespacePids(name)) runQuietly("kill", ["-9", String(pid)]);
    runQuietly("ip", ["link", "del", `pmc${match[1]}h${match[2]}`]);
    runQuietly("ip", ["netns", "del", name]);
  }
  // Guard routes whose veth is gone (no route of the veth's own for the same subnet).
  const routes = execFileSync("ip", ["-4", "route", "show"], { encoding: "utf8" }).split("\n");
  for (const line of routes) {
    const guard = new RegExp(`^unreachable (10\\.213\\.\\d+\\.\\d+/30) metric ${GUARD_ROUTE_METRIC}`).exec(line);
    if (guard && !routes.some((other) => other.startsWith(`${guard[1]} dev `))) {
      runQuietly("ip", ["route", "del", "unreachable", guard[1], "metric", GUARD_ROUTE_METRIC]);
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function namespacePids(name: string): number[] {
  try {
    return execFileSync("ip", ["netns", "pids", name], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A /30 of 10.213.0.0/16 that no route of this host uses: [subnet, host address, namespace address]. */
async function freeSubnet(): Promise<[string, string, string]> {
  const routes = await run("ip", ["-4", "route", "show"]);
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const third = randomInt(256);
    const fourth = 4 * randomInt(64);
    const subnet = `10.213.${third}.${fourth}/30`;
    if (!routes.includes(`10.213.${third}.`)) return [subnet, `10.213.${third}.${fourth + 1}`, `10.213.${third}.${fourth + 2}`];
  }
  throw new Error("no free /30 in 10.213.0.0/16");
}

/** One namespace and its veth pair; `delete` removes both and every process left in it. */
export class NetworkNamespace {
  private isDeleted = false;

  private constructor(
    readonly name: string,
    readonly hostVeth: string,
    readonly namespaceVeth: string,
    readonly subnet: string,
    readonly hostAddress: string,
    readonly address: string,
  ) {}

  /** Creates a namespace, its veth pair with a /30 on it, and the fault tree on both ends (passing all). */
  static async create(): Promise<NetworkNamespace> {
    sweepStaleNamespaces();
    created += 1;
    const [subnet, hostAddress, address] = await freeSubnet();
    const namespace = new NetworkNamespace(
      `${NAMESPACE_PREFIX}-${process.pid}-${created}`,
      `pmc${process.pid}h${created}`,
      `pmc${process.pid}n${created}`,
      subnet,
      hostAddress,
      address,
    );
    try {
      await namespace.setUp();
    } catch (error) {
      namespace.delete();
      throw error;
    }
    return namespace;
  }

  private async setUp(): Promise<void> {
    const inside = ["-n", this.name];
    await run("ip", ["netns", "add", this.name]);
    await run("ip", ["link", "add", this.hostVeth, "type", "veth", "peer", "name", this.namespaceVeth]);
    await run("ip", ["link", "set", this.namespaceVeth, "netns", this.name]);
    await run("ip", ["addr", "add", `${this.hostAddress}/30`, "dev", this.hostVeth]);
    await run("ip", ["route", "add", "unreachable", this.subnet, "metric", GUARD_ROUTE_METRIC]);
    await run("ip", ["link", "set", this.hostVeth, "up"]);
    await run("ip", [...inside, "addr", "add", `${this.address}/30`, "dev", this.namespaceVeth]);
    await run("ip", [...inside, "link", "set", this.namespaceVeth, "up"]);
    await run("ip", [...inside, "link", "set", "lo", "up"]);
    for (const [prefix, device] of this.ends()) {
      await run("tc", [...prefix, "qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "10"]);
      for (const classid of [PASS_CLASS, DROP_CLASS]) {
        await run("tc", [...prefix, "class", "add", "dev", device, "parent", "1:", "classid", classid, "htb", "rate", "10gbit", "quantum", "60000"]);
      }
      await run("tc", [...prefix, "qdisc", "add", "dev", device, "parent", DROP_CLASS, "pfifo", "limit", "0"]);
    }
  }

  /** Both veth ends, each with the `tc` arguments that reach it. */
  private ends(): [string[], string][] {
    return [
      [[], this.hostVeth],
      [["-n", this.name], this.namespaceVeth],
    ];
  }

  /** `file args` run inside the namespace (`ip netns exec` execs it: the pid is the program's). */
  command(file: string, args: readonly string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.name, file, ...args]];
  }

  /** Drops every packet on the link, both ways: a partition (a blackhole, not a refusal). */
  partition(): Promise<void> {
    return this.impair(100);
  }

  /** Drops `percent` % of the packets on the link, each way, at random. */
  lossy(percent: number): Promise<void> {
    return this.impair(percent);
  }

  /** Takes every fault off the link. */
  async heal(): Promise<void> {
    for (const [prefix, device] of this.ends()) {
      await run("tc", [...prefix, "filter", "del", "dev", device, "parent", "1:"]);
    }
  }

  private async impair(percent: number): Promise<void> {
    await this.heal();
    const program = dropProgram(percent);
    for (const [prefix, device] of this.ends()) {
      await run("tc", [...prefix, "filter", "add", "dev", device, "parent", "1:", "bpf", "bytecode", program, "classid", PASS_CLASS]);
    }
  }

  /**
   * Kills whatever still runs in the namespace, then deletes the veth pair and the namespace; the
   * guard route goes last. Synchronous, so that it can run from an exit handler too. Idempotent.
   */
  delete(): void {
    if (this.isDeleted) return;
    this.isDeleted = true;
    for (const pid of namespacePids(this.name)) runQuietly("kill", ["-9", String(pid)]);
    runQuietly("ip", ["link", "del", this.hostVeth]);
    runQuietly("ip", ["netns", "del", this.name]);
    runQuietly("ip", ["route", "del", "unreachable", this.subnet, "metric", GUARD_ROUTE_METRIC]);
  }
}
