import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MTLS_COMPARISONS } from "../../bench/bench-tls";
import type { BenchReport } from "../../bench/report";
import { CONNECT_VS_PLAIN } from "../../bench/scenario";
import type { Row } from "../../bench/scenario";
import { runNodeScript } from "../support/cli-run";
import { BUILT_SCENARIOS } from "../../bench/scenarios";
import { TOOLS_TARGET, missingTools } from "../../bench/tools";
import { namespacesUnavailable } from "../support/netns";
import { isCi } from "../support/tools";

/** The whole smoke run (~40 s here on a quiet machine, twice that on a busy one) must fit within a test run (issue 4: the harness, not the figures). */
const SMOKE_TIMEOUT_MS = 120_000;
const RUN_SCRIPT = path.resolve(__dirname, "..", "..", "bench", "run.js");

function measuredRows(report: BenchReport, scenario: string): Row[] {
  const outcome = report.scenarios.find((candidate) => candidate.name === scenario);
  return outcome?.status === "measured" ? outcome.rows : [];
}

describe("bench harness (smoke mode)", function () {
  this.timeout(SMOKE_TIMEOUT_MS + 15_000);
  let outDir: string;
  let report: BenchReport;
  let stdout: string;

  before(async function () {
    const missing = missingTools();
    if (missing.length > 0) {
      const reason = `${missing.join(" and ")} not installed: run \`make ${TOOLS_TARGET}\``;
      if (isCi()) throw new Error(`${reason} (CI=true: missing tools fail the run)`);
      process.stderr.write(`skipping "${this.test?.parent?.fullTitle() ?? "bench harness"}": ${reason}\n`);
      this.skip();
    }
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-bench-smoke-"));
    const run = await runNodeScript(RUN_SCRIPT, ["--smoke", "--out", outDir], SMOKE_TIMEOUT_MS);
    assert.equal(run.code, 0, `harness exited ${String(run.code)}:\n${run.stderr}\n${run.stdout}`);
    stdout = run.stdout;
    report = JSON.parse(fs.readFileSync(path.join(outDir, "smoke-latest.json"), "utf8")) as BenchReport;
  });

  after(() => {
    if (outDir) fs.rmSync(outDir, { recursive: true, force: true });
  });

  it("measures every built scenario and gives each row finite figures", () => {
    for (const scenario of BUILT_SCENARIOS) {
      const outcome = report.scenarios.find((candidate) => candidate.name === scenario.name);
      assert.ok(outcome, `${scenario.name} missing from the report`);
      assert.equal(outcome.status, "measured", `${scenario.name}: ${JSON.stringify(outcome)}`);
      assert.ok(outcome.status === "measured" && outcome.rows.length > 0, `${scenario.name} has no rows`);
      for (const row of outcome.rows) {
        const where = `${row.scenario} ${row.metric}`;
        assert.ok(Number.isFinite(row.protomesh), `${where}: protomesh is ${String(row.protomesh)}`);
        if (row.ratio !== null) {
          assert.ok(Number.isFinite(row.baseline), `${where}: baseline is ${String(row.baseline)}`);
          assert.ok(Number.isFinite(row.ratio), `${where}: ratio is ${String(row.ratio)}`);
        }
        assert.ok(row.spread && Number.isFinite(row.spread.min) && Number.isFinite(row.spread.max), `${where}: no spread`);
      }
    }
  });

  it("reports event-loop delay (B8) from the processes of B1 to B4", () => {
    const rows = report.scenarios.flatMap((outcome) => (outcome.status === "measured" ? outcome.rows : []));
    const delays = rows.filter((row) => row.scenario === "B8");
    for (const source of ["B1", "B2", "B3", "B4"]) {
      assert.ok(delays.some((row) => row.metric.includes(`(${source})`)), `no B8 row from ${source}`);
    }
  });

  it("compares every LB policy the mesh offers that spreads calls with round_robin in B3, per-pick cost included", () => {
    const rows = measuredRows(report, "B3");
    assert.ok(rows.length > 0, "no B3 rows");
    assert.ok(rows.every((row) => row.baselineName === "round_robin"));
    for (const policy of ["ring_hash", "weighted_round_robin", "p2c_ewma", "least_request"]) {
      assert.ok(rows.some((row) => row.metric.startsWith(`${policy}: latency p99`)), `no ${policy} row`);
    }
    for (const policy of ["weighted_round_robin", "p2c_ewma", "least_request"]) {
      assert.ok(rows.some((row) => row.metric.startsWith(`${policy}: per-pick cost`)), `no per-pick cost of ${policy}`);
    }
    const goals = rows.filter((row) => row.goal !== undefined).map((row) => row.metric.split(":")[0]);
    assert.deepEqual(goals, ["p2c_ewma", "p2c_ewma", "p2c_ewma"], "p99, calls OK and the slow replica's share of p2c_ewma carry the goals");
  });

  it("puts the mesh client and a static-list grpc-js client through the same failover in B4, partition included where namespaces can be made", () => {
    const rows = measuredRows(report, "B4");
    // The partition needs a network namespace (root, iproute2): always there under CI.
    const canPartition = isCi() || namespacesUnavailable() === undefined;
    const partitionRows = canPartition ? ["partitioned", "until calls stop going to it", "healing the link"] : [];
    for (const what of ["failed calls after SIGKILL", "until calls stop timing out", "first served call", ...partitionRows]) {
      const row = rows.find((candidate) => candidate.metric.includes(what));
      assert.ok(row, `no B4 row for ${what}`);
      assert.ok(Number.isFinite(row.baseline) && Number.isFinite(row.protomesh), `${row.metric}: no figures`);
    }
  });

  it("measures connect-node in the rounds of B1, B5 and B11, beside protomesh, against plain grpc-js", () => {
    for (const scenario of ["B1", "B5", "B11"]) {
      const rows = measuredRows(report, scenario);
      const peerRows = rows.filter((row) => row.metric.startsWith(`${CONNECT_VS_PLAIN}: `));
      assert.ok(peerRows.length > 0, `no ${CONNECT_VS_PLAIN} row in ${scenario}`);
      assert.ok(rows.length > peerRows.length, `no protomesh row in ${scenario}`);
      assert.ok(peerRows.every((row) => row.baselineName === "plain grpc-js" && row.ratio !== null && row.goal === undefined));
    }
    const throughput = measuredRows(report, "B11").filter((row) => row.metric.includes("unary throughput (grpc_bench-style"));
    assert.equal(throughput.length, 2, "B11: one throughput row for protomesh and one for connect-node");
  });

  it("times the traffic's reaction to each endpoint change in B7", () => {
    const rows = measuredRows(report, "B7");
    assert.equal(rows.length, 4);
    assert.ok(rows.every((row) => row.goal?.text === "≤ 100 ms" && row.protomesh !== null && row.protomesh >= 0));
  });

  it("prints one table with the columns of the method", () => {
    assert.match(stdout, /^\| scenario \| metric \| baseline \| protomesh \| ratio \| spread \(min–max\) \| goal \|$/m);
    assert.match(stdout, /\| B1 \| unary throughput at saturation \| \d+ req\/s \| \d+ req\/s \| [\d.]+× \|/);
  });

  it("states the machine it ran on", () => {
    assert.ok(report.machine.nproc >= 1);
    assert.ok(report.machine.cpuModel.length > 0);
    assert.equal(report.machine.node, process.version);
  });
});

/** B1T and B2T, run on request only (~25 s here in smoke mode on a busy machine). */
const MTLS_SMOKE_TIMEOUT_MS = 90_000;

describe("bench harness, the mTLS scenarios (smoke mode)", function () {
  this.timeout(MTLS_SMOKE_TIMEOUT_MS + 15_000);

  it("measures B1T and B2T: protomesh against plain grpc-js under the same mTLS, and each side's mTLS against its plaintext", async function () {
    const missing = missingTools();
    if (missing.length > 0) {
      const reason = `${missing.join(" and ")} not installed: run \`make ${TOOLS_TARGET}\``;
      if (isCi()) throw new Error(`${reason} (CI=true: missing tools fail the run)`);
      process.stderr.write(`skipping "${this.test?.fullTitle() ?? "the mTLS scenarios"}": ${reason}\n`);
      this.skip();
    }
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-bench-smoke-mtls-"));
    try {
      const run = await runNodeScript(RUN_SCRIPT, ["--smoke", "--out", outDir, "B1T", "B2T"], MTLS_SMOKE_TIMEOUT_MS);
      assert.equal(run.code, 0, `harness exited ${String(run.code)}:\n${run.stderr}\n${run.stdout}`);
      const report = JSON.parse(fs.readFileSync(path.join(outDir, "smoke-latest.json"), "utf8")) as BenchReport;
      const measured = report.scenarios.filter((outcome) => outcome.status === "measured").map((outcome) => outcome.name);
      assert.deepEqual(measured, ["B1T", "B2T"], "the scenarios named, and only they, are measured");
      for (const scenario of ["B1T", "B2T"]) {
        const rows = measuredRows(report, scenario);
        for (const { prefix, baselineName } of Object.values(MTLS_COMPARISONS)) {
          const compared = rows.filter((row) => row.metric.startsWith(`${prefix}: `));
          assert.ok(compared.some((row) => row.ratio !== null), `${scenario}: no "${prefix}" ratio`);
          assert.ok(compared.every((row) => row.baselineName === baselineName), `${scenario} "${prefix}": baseline is not ${baselineName}`);
        }
        for (const row of rows) {
          const where = `${row.scenario} ${row.metric}`;
          assert.ok(Number.isFinite(row.protomesh), `${where}: protomesh is ${String(row.protomesh)}`);
          if (row.ratio !== null) assert.ok(Number.isFinite(row.baseline) && Number.isFinite(row.ratio), `${where}: no ratio`);
        }
      }
    } finally {
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  });
});
