import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "./support/tools";

/** Runs the repository's layering check (dependency-cruiser, as `make lint` does) over a tree in `cwd`. */
function cruise(cwd: string): Promise<{ code: number; output: string }> {
  const depcruise = path.join(repoRoot(), "node_modules", ".bin", "depcruise");
  const args = ["--config", ".dependency-cruiser.cjs", "--output-type", "err", "mesh", "services", "cli"];
  return new Promise((resolve) => {
    execFile(depcruise, args, { cwd, encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: stdout + stderr });
    });
  });
}

/** A scratch tree with the repository's rules and tsconfig, and `files` (path → source). */
function tree(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-layers-"));
  fs.copyFileSync(path.join(repoRoot(), ".dependency-cruiser.cjs"), path.join(dir, ".dependency-cruiser.cjs"));
  fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: { module: "node16", strict: true } }));
  for (const [file, source] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), source);
  }
  return dir;
}

describe("layers (make lint: dependency-cruiser with .dependency-cruiser.cjs)", function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  it("passes a tree that keeps the layers", async () => {
    const dir = tree({
      "mesh/server.ts": "export const serve = 1;\n",
      "mesh/index.ts": 'export { serve } from "./server";\n',
      "mesh/controlplane/control-plane.ts": 'import { serve } from "../server";\nexport const plane = serve;\n',
      "services/catalog/main.ts": 'import { serve } from "../../mesh";\nexport const main = serve;\n',
      "cli/protomesh.ts": 'import { plane } from "../mesh/controlplane/control-plane";\nimport { main } from "../services/catalog/main";\nexport const all = [plane, main];\n',
    });
    dirs.push(dir);
    const { code, output } = await cruise(dir);
    assert.equal(code, 0, output);
  });

  it("fails naming the rule when the kit imports a program, a service or the control plane, or a service goes around the entry", async () => {
    const dir = tree({
      "mesh/index.ts": 'export { serve } from "./server";\n',
      "mesh/server.ts": 'import { all } from "../cli/protomesh";\nimport { plane } from "./controlplane/control-plane";\nexport const serve = [all, plane];\n',
      "mesh/controlplane/control-plane.ts": 'import { main } from "../../services/catalog/main";\nexport const plane = main;\n',
      "services/catalog/main.ts": 'import { serve } from "../../mesh/server";\nimport { other } from "../orders/main";\nexport const main = [serve, other];\n',
      "services/orders/main.ts": "export const other = 2;\n",
      "cli/protomesh.ts": "export const all = 3;\n",
    });
    dirs.push(dir);
    const { code, output } = await cruise(dir);
    assert.notEqual(code, 0, output);
    for (const rule of [
      "kit-imports-no-programs-or-services: mesh/server.ts → cli/protomesh.ts",
      "kit-imports-no-control-plane: mesh/server.ts → mesh/controlplane/control-plane.ts",
      "kit-imports-no-programs-or-services: mesh/controlplane/control-plane.ts → services/catalog/main.ts",
      "services-use-the-kit-entry: services/catalog/main.ts → mesh/server.ts",
      "services-stay-in-their-folder: services/catalog/main.ts → services/orders/main.ts",
      "no-circular",
    ]) {
      assert.ok(output.includes(rule), `expected "${rule}" in:\n${output}`);
    }
  });
});
