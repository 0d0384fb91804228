import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "./support/tools";

/** PATH without the directories that hold a `go` executable: a machine without Go. */
function pathWithoutGo(): string {
  return (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((dir) => dir !== "" && !fs.existsSync(path.join(dir, "go")))
    .join(path.delimiter);
}

/** Runs `make <args>` at the repository root with `env` over this process's environment. */
function make(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile("make", ["--no-print-directory", ...args], { cwd: repoRoot(), env: { ...process.env, ...env }, encoding: "utf8", timeout: 60_000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
    );
  });
}

describe("Makefile on a machine without Go", function () {
  this.timeout(90_000);
  let toolsDir: string;

  beforeEach(() => {
    toolsDir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-tools-"));
  });
  afterEach(() => fs.rmSync(toolsDir, { recursive: true, force: true }));

  it("names the missing toolchain and goes on, so that `make up` runs and the tool suites skip", async () => {
    const { code, stderr } = await make(["tools", `TOOLS_DIR=${toolsDir}`], { PATH: pathWithoutGo(), CI: "" });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /^Go not found: grpcurl is not installed \(install Go from https:\/\/go\.dev\/dl\); the tests that drive it are skipped$/m);
    assert.match(stderr, /^Go not found: grpc-health-probe is not installed/m);
    assert.deepEqual(fs.readdirSync(toolsDir), []);
  });

  it("fails under CI, naming Go and the tool", async () => {
    const { code, stderr } = await make(["tools", `TOOLS_DIR=${toolsDir}`], { PATH: pathWithoutGo(), CI: "true" });
    assert.notEqual(code, 0);
    assert.match(stderr, /^Go is required to install github\.com\/fullstorydev\/grpcurl\/cmd\/grpcurl@v[\d.]+ \(CI=true\)/m);
  });
});

describe("Makefile without the Go or Python toolchain", function () {
  this.timeout(90_000);

  it("skips building and testing the Go parts outside CI, saying what to install, and fails under CI", async () => {
    const skipped = await make(["go-build", "go-test", "GO_DIST=/nonexistent/never"], { PATH: pathWithoutGo(), CI: "" });
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.match(skipped.stderr, /^Go not found: skipping build the Go inventory service and interop program \(install Go 1\.26 or later/m);
    assert.match(skipped.stderr, /^Go not found: skipping run the Go tests/m);
    const failed = await make(["go-build"], { PATH: pathWithoutGo(), CI: "true" });
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /^Go is required to build the Go inventory service and interop program \(CI=true\)/m);
  });

  it("skips the Python virtualenv outside CI, saying what to install, and fails under CI", async () => {
    const venv = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-venv-"));
    try {
      const skipped = await make(["python-env", "PYTHON3=/nonexistent/python3", `VENV=${venv}/v`], { CI: "" });
      assert.equal(skipped.code, 0, skipped.stderr);
      assert.match(skipped.stderr, /Python 3\.10 or later not found: the Python kit, pricing and their tests are skipped \(install python3 and python3-venv/);
      assert.equal(fs.existsSync(path.join(venv, "v")), false);
      const failed = await make(["python-env", "PYTHON3=/nonexistent/python3", `VENV=${venv}/v`], { CI: "true" });
      assert.notEqual(failed.code, 0);
      assert.match(failed.stderr, /Python 3\.10 or later is required \(CI=true\)/);
    } finally {
      fs.rmSync(venv, { recursive: true, force: true });
    }
  });
});

