/**
 * The bench's latency pictures: for each case the load generator drove, one
 * SVG of HdrHistogram's percentile spectrum with a line per server, drawn
 * from the histogram each report carries (`latency-KEY.svg` beside
 * bench.md and bench.svg). A table gives p99; the spectrum shows where each
 * server's tail begins and how far it goes.
 *
 * @module
 */

import { LatencyHistogram } from "../tools/_histogram.ts";
import { type LatencySeries, latencySvg } from "../tools/_plot.ts";
import type { CaseSpec } from "./_cases.ts";
import type { Results } from "./_report.ts";

/** One picture: its file name (in the output directory) and its SVG. */
export interface LatencyPlotFile {
  /** `latency-KEY.svg`. */
  file: string;
  /** The case it draws. */
  title: string;
  /** The document. */
  svg: string;
}

/**
 * A spectrum per case whose cells carry a load.ts report with samples, a
 * line per server in the order run; cases without (handshakes, RSS, the C
 * client's UDP) have none.
 */
export function latencyPlots(
  cases: readonly CaseSpec[],
  servers: readonly string[],
  results: Results,
  machine: string,
): LatencyPlotFile[] {
  const out: LatencyPlotFile[] = [];
  for (const c of cases) {
    const series: LatencySeries[] = [];
    for (const server of servers) {
      const text = results.get(server)?.get(c.key)?.report?.latency
        ?.histogram;
      if (typeof text !== "string") continue;
      const histogram = LatencyHistogram.decode(text);
      if (histogram.count > 0) series.push({ label: server, histogram });
    }
    if (series.length === 0) continue;
    // "50 conns msg/s" is a throughput column's title: the case is the rest.
    const title = c.title.replace(/ (msg|MB)\/s$/, "");
    out.push({
      file: `latency-${c.key.replace(/[^A-Za-z0-9_-]/g, "_")}.svg`,
      title,
      svg: latencySvg({
        title: `Round-trip latency: ${title}`,
        subtitle: `tools/load.ts ${c.args.join(" ")}; ${machine}`,
        series,
      }),
    });
  }
  return out;
}
