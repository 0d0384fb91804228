import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium } from "playwright-core";
import type { BrowserContext } from "playwright-core";
import { isCi } from "./tools";

/** Debian's chromium, which `make chromium` installs. */
export const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * For a `before` hook of a suite that drives the browser: returns when chromium is installed; else
 * a CI run fails the suite saying to run `make chromium`, and elsewhere the suite is skipped with
 * the reason printed, so a skip is never silent.
 */
export function requireChromium(context: Mocha.Context): void {
  if (fs.existsSync(CHROMIUM)) return;
  const reason = `chromium is not installed at ${CHROMIUM}: run \`make chromium\` to install it`;
  if (isCi()) throw new Error(`${reason} (CI=true: a missing browser fails the run)`);
  process.stderr.write(`skipping "${context.test?.parent?.fullTitle()}": ${reason}\n`);
  context.skip();
}

/** Headless chromium with a throwaway profile; `close` ends it and removes the profile. */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-chromium-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  return {
    context,
    close: async () => {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
