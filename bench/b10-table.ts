import type { RestartFigures } from "./b10-analysis";
import { percentileOf as percentile } from "./pair-statistics";

/**
 * B10's Markdown tables, one row per case (SIGKILL, SIGTERM): the time the mesh took to be whole
 * again and what it cost, then flapping and losses. Each cell is the median of the case's runs
 * and the worst of them ("p50 / max"; "p50 / min" where less is worse).
 */

function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}

/** "p50 / worst" of one figure over the runs of a case. */
function cell(runs: readonly RestartFigures[], pick: (run: RestartFigures) => number, digits = 1, worst: "max" | "min" = "max"): string {
  const values = runs.map(pick);
  const extreme = worst === "max" ? Math.max(...values) : Math.min(...values);
  return `${fixed(percentile(values, 50), digits)} / ${fixed(extreme, digits)}`;
}

const s = (ms: number) => ms / 1000;

/** The two tables of a B10 run. */
export function table(runs: readonly RestartFigures[], settings: { endpoints: number; services: number; subscribers: number }): string {
  const cases = [...new Set(runs.map((run) => run.signal))];
  const byCase = cases.map((signal) => ({ signal, runs: runs.filter((run) => run.signal === signal) }));
  const size = `${settings.endpoints} (${settings.services} × ${Math.round(settings.endpoints / settings.services)})`;
  const time = [
    "| case | endpoints | whole again | restart → all registered s | → all HEALTHY in the registry s | → whole at every subscriber s | kill → whole s | Register calls | of them failed | Registers / s, mean | peak in 1 s | keep-alive failures | most failures of one lease | connections dropped, accept queue full | control plane CPU ms, restart → whole | mean % of a core | peak % (500 ms) | RSS MB before kill | peak RSS MB | cores busy, restart → whole % |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  const flapping = [
    `| case | losses before whole (${settings.subscribers} subscribers) | fewest HEALTHY in a subscriber's EDS | subscribers that lost none | EDS held back (warm-up) | losses after whole | UNHEALTHY in the registry after whole | leases expired | missing | unexpected | duplicated | calls failed while it was down (of, p50) | calls failed (never sent) | calls made | calls / s steady, slowest storm second | top endpoint's share of svc-000's calls per second: storm | steady |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const { signal, runs: mine } of byCase) {
    const whole = mine.filter((run) => run.isWhole).length;
    const c = (pick: (run: RestartFigures) => number, digits = 0, worst: "max" | "min" = "max") => cell(mine, pick, digits, worst);
    time.push(
      `| ${signal} | ${size} | ${whole} of ${mine.length} | ${c((run) => s(run.allRegisteredMs), 2)} | ${c((run) => s(run.allHealthyMs), 2)} | ` +
        `${c((run) => s(run.wholeAtSubscribersMs), 2)} | ${c((run) => s(run.killToWholeMs), 2)} | ${c((run) => run.registerCalls)} | ` +
        `${c((run) => run.registerFailures)} | ${c((run) => run.registerMeanPerS)} | ${c((run) => run.registerPeakPerS)} | ` +
        `${c((run) => run.keepAliveFailures)} | ${c((run) => run.mostFailuresInARow)} | ${c((run) => run.listenOverflows)} | ${c((run) => run.cpCpuMs)} | ` +
        `${c((run) => run.cpCpuMeanPercent)} | ${c((run) => run.cpCpuPeakPercent)} | ${c((run) => run.cpRssBeforeKillMb)} | ${c((run) => run.cpRssPeakMb)} | ` +
        `${(mine[0]?.coresBusyPercent ?? []).map((_, core) => `${core}: ${c((run) => run.coresBusyPercent[core])}`).join(", ")} |`,
    );
    const percent = (value: number) => value * 100;
    flapping.push(
      `| ${signal} | ${c((run) => run.stormLosses)} | ${c((run) => run.fewestHealthyListed, 0, "min")} of ${mine[0]?.fewestHealthyOf ?? 0} | ` +
        `${c((run) => run.subscribersThatLostNone, 0, "min")} of ${mine[0]?.subscribers ?? 0} | ${c((run) => run.edsHeldBack)} | ` +
        `${c((run) => run.flapsAfterWhole)} | ${c((run) => run.registryUnhealthyAfterWhole)} | ${c((run) => run.leasesExpired)} | ` +
        `${c((run) => run.missing)} | ${c((run) => run.unexpected)} | ${c((run) => run.duplicated)} | ` +
        `${c((run) => run.callsFailedWhileDown)} (of ${fixed(percentile(mine.map((run) => run.callsWhileDown), 50), 0)}) | ${c((run) => run.callsFailed)} (${c((run) => run.callsFailedUnsent)}) | ${c((run) => run.calls)} | ` +
        `${c((run) => run.callsPerSSteady)}, ${c((run) => run.fewestCallsInAStormSecond, 0, "min")} | ` +
        `${c((run) => percent(run.peakShareOnOneEndpoint))} % | ${c((run) => percent(run.steadyShareOnOneEndpoint))} % |`,
    );
  }
  const perCase = runs.length / Math.max(1, cases.length);
  return [
    time.join("\n"),
    flapping.join("\n"),
    `${perCase} runs per case; each cell is p50 / max over them (p50 / min for "fewest" and "lost none"). Times from the restarted control plane's "listening" line; ` +
      `a loss is an endpoint that was HEALTHY in a subscriber's EDS and left it or turned UNHEALTHY.`,
  ].join("\n\n");
}
