import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { RestartFigures } from "../../bench/b10-analysis";
import { runNodeScript } from "../support/cli-run";

/** B10 at 20 endpoints, one SIGKILL restart (~14 s here on a busy machine): the harness, not the figures. */
const SMOKE_TIMEOUT_MS = 45_000;
const B10_SCRIPT = path.resolve(__dirname, "..", "..", "bench", "b10-registration-storm.js");
const ENDPOINTS = 20;
const SERVICES = 2;

describe("B10 registration storm (smoke size)", function () {
  this.timeout(SMOKE_TIMEOUT_MS + 15_000);
  let outDir: string;
  let stdout: string;
  let report: { settings: { endpoints: number; services: number }; runs: RestartFigures[] };

  before(async () => {
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-b10-smoke-"));
    const args = ["--endpoints", String(ENDPOINTS), "--services", String(SERVICES), "--repeats", "1", "--cases", "SIGKILL"];
    const run = await runNodeScript(B10_SCRIPT, [...args, "--subscribers", "4", "--settle-ms", "1000", "--spread-ms", "500", "--out", outDir], SMOKE_TIMEOUT_MS);
    assert.equal(run.code, 0, `b10 exited ${String(run.code)}:\n${run.stderr}\n${run.stdout}`);
    stdout = run.stdout;
    report = JSON.parse(fs.readFileSync(path.join(outDir, "b10-latest.json"), "utf8")) as typeof report;
  });

  after(() => {
    if (outDir) fs.rmSync(outDir, { recursive: true, force: true });
  });

  it("reports the mesh whole again after the control plane was killed and restarted, every endpoint back once", () => {
    assert.equal(report.settings.endpoints, ENDPOINTS);
    assert.equal(report.runs.length, 1);
    const [run] = report.runs;
    assert.equal(run.signal, "SIGKILL");
    assert.equal(run.isWhole, true, JSON.stringify(run));
    assert.deepEqual([run.missing, run.unexpected, run.duplicated], [0, 0, 0]);
    assert.ok(run.registerCalls >= ENDPOINTS, `${run.registerCalls} Register calls for ${ENDPOINTS} endpoints`);
  });

  it("gives every time, rate and cost of the restart as a finite figure", () => {
    const [run] = report.runs;
    const figures: Array<keyof RestartFigures> = [
      "allRegisteredMs",
      "allHealthyMs",
      "wholeAtSubscribersMs",
      "killToWholeMs",
      "registerPeakPerS",
      "cpCpuMs",
      "cpRssPeakMb",
      "peakShareOnOneEndpoint",
    ];
    for (const name of figures) {
      const value = run[name];
      assert.ok(typeof value === "number" && Number.isFinite(value) && value >= 0, `${name} is ${String(value)}`);
    }
    for (const name of ["stormLosses", "flapsAfterWhole", "keepAliveFailures", "callsFailed"] as const) {
      assert.ok(Number.isInteger(run[name]) && run[name] >= 0, `${name} is ${String(run[name])}`);
    }
    assert.equal(run.subscribers, 4);
    assert.ok(run.calls > 0, "the caller made no call through the mesh");
  });

  it("prints the time table and the flapping table", () => {
    assert.match(stdout, /^\| case \| endpoints \| whole again \| restart → all registered s \|/m);
    assert.match(stdout, /^\| SIGKILL \| 20 \(2 × 10\) \| 1 of 1 \|/m);
    assert.match(stdout, /^\| case \| losses before whole \(4 subscribers\) \|/m);
  });
});
