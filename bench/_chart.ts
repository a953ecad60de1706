/**
 * The bench's chart (bench.svg): one panel per table, a group of bars per
 * server, a bar per case of the panel, each the server's figure as a ratio
 * to the plain Deno loop's in the same case (1.0, the dashed line). Which
 * cases it draws is the cases' data (`chart`; RSS is not a throughput).
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import { escapeXml } from "../tools/_plot.ts";
import type { CaseSpec, TableSpec } from "./_cases.ts";
import { figure } from "./_measure.ts";
import type { Results } from "./_report.ts";

const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"];
const BAR_H = 7, GAP = 8, WIDTH = 380;
/** The narrowest room left of the bars for the rows' names. */
const MIN_LEFT = 95;
/** About how wide a character of the 11 px sans-serif labels is. */
const CHAR_W = 6.2;

/**
 * The step between ticks on an axis up to `highest`: 0.5, 1, 2, 5, 10, ...,
 * the smallest that makes at most 8 of them, however far one ratio runs (a
 * stalled yardstick run makes ratios of thousands).
 */
function tickStep(highest: number): number {
  for (let scale = 1;; scale *= 10) {
    for (const m of [0.5, 1, 2, 5]) {
      if (highest / (m * scale) <= 8) return m * scale;
    }
  }
}

/**
 * A panel drawn apart from the tables: bars of `ratios[row][case]` (0 where
 * not run) against a yardstick named in `title`. The relays' cases use it.
 */
export interface ChartPanel {
  /** The panel's title, naming what 1.0 is. */
  title: string;
  /** A group of bars per row (a server, a relay). */
  rows: string[];
  /** A bar per case in each group, and its legend. */
  cases: string[];
  /** Each row's figure in each case as a ratio to the yardstick's. */
  ratios: number[][];
}

/** Whether case `c` is drawn. */
function charted(c: CaseSpec): boolean {
  return c.chart ?? !c.rss;
}

/** A table's panel: each server's figure as a ratio to the loop's. */
function tablePanel(
  title: string,
  servers: string[],
  cases: CaseSpec[],
  results: Results,
): ChartPanel {
  const base = results.get("loop");
  const ratios = servers.map((s) =>
    cases.map((c) => {
      const cell = results.get(s)?.get(c.key);
      const b = base?.get(c.key);
      const v = cell ? figure(cell) : undefined;
      const bv = b ? figure(b) : undefined;
      return v !== undefined && bv ? v / bv : 0;
    })
  );
  return { title, rows: servers, cases: cases.map((c) => c.title), ratios };
}

/** A panel's SVG elements from `top`; returns them and the next top. */
function draw(
  { title, rows: servers, cases, ratios }: ChartPanel,
  top: number,
  left: number,
): { parts: string[]; bottom: number } {
  const highest = Math.max(1.2, ...ratios.flat());
  const step = tickStep(highest);
  const max = Math.ceil(highest / step) * step;
  const barsTop = top + 18;
  const groupH = cases.length * BAR_H + GAP;
  const axisBottom = barsTop + servers.length * groupH;
  const x = (r: number) => (left + (r / max) * WIDTH).toFixed(1);
  const parts = [
    `<text x="4" y="${top + 8}" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  for (let t = 0; t <= max + 1e-9; t += step) {
    parts.push(
      `<line x1="${x(t)}" y1="${barsTop - 3}" x2="${
        x(t)
      }" y2="${axisBottom}" stroke="#ddd"/>`,
      `<text x="${x(t)}" y="${axisBottom + 11}" text-anchor="middle">${
        step < 1 ? t.toFixed(1) : String(t)
      }</text>`,
    );
  }
  // The yardstick, 1.0, whatever the ticks.
  parts.push(
    `<line x1="${x(1)}" y1="${barsTop - 3}" x2="${
      x(1)
    }" y2="${axisBottom}" stroke="#000" stroke-dasharray="3,2"/>`,
  );
  servers.forEach((s, i) => {
    const y0 = barsTop + i * groupH;
    parts.push(
      `<text x="${left - 6}" y="${
        y0 + (cases.length * BAR_H) / 2 + 4
      }" text-anchor="end">${escapeXml(s)}</text>`,
    );
    ratios[i]!.forEach((r, j) => {
      if (r === 0) return; // not run: no bar
      parts.push(
        `<rect x="${left}" y="${y0 + j * BAR_H}" width="${
          (Number(x(r)) - left).toFixed(1)
        }" height="${BAR_H - 1}" fill="${COLORS[j % COLORS.length]}"/>`,
      );
    });
  });
  cases.forEach((c, j) => {
    const y = axisBottom + 24 + j * 12;
    parts.push(
      `<rect x="${left}" y="${y - 8}" width="10" height="8" fill="${
        COLORS[j % COLORS.length]
      }"/>`,
      `<text x="${left + 14}" y="${y}">${escapeXml(c)}</text>`,
    );
  });
  return { parts, bottom: axisBottom + 24 + cases.length * 12 + 8 };
}

/**
 * The chart of `cases` (every table's), `servers` in order: a panel per
 * table of `tables` with a drawn case some server ran, then the `extra`
 * panels.
 */
export function svgChart(
  tables: readonly TableSpec[],
  servers: string[],
  cases: CaseSpec[],
  results: Results,
  title: string,
  extra: readonly ChartPanel[] = [],
): string {
  const parts: string[] = [
    `<text x="4" y="14" font-size="12" font-weight="bold">${
      escapeXml(title)
    }</text>`,
    `<text x="4" y="27" fill="#555">throughput as a ratio to the plain Deno read/write loop (1.0)</text>`,
  ];
  let top = 38;
  const panels: ChartPanel[] = [];
  for (const table of tables) {
    const drawn = cases.filter((c) => c.table === table.key && charted(c));
    const ran = servers.filter((s) =>
      drawn.some((c) => {
        const cell = results.get(s)?.get(c.key);
        return cell !== undefined && figure(cell) !== undefined;
      })
    );
    if (drawn.length === 0 || ran.length === 0) continue;
    panels.push(tablePanel(table.chartTitle, ran, drawn, results));
  }
  panels.push(...extra.filter((p) => p.rows.length > 0));
  // Room for the longest row name left of the bars.
  const left = Math.max(
    MIN_LEFT,
    ...panels.flatMap((p) =>
      p.rows.map((r) => Math.ceil(r.length * CHAR_W) + 12)
    ),
  );
  for (const panel of panels) {
    const p = draw(panel, top, left);
    parts.push(...p.parts);
    top = p.bottom;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${
      left + WIDTH + 20
    }" height="${top}" font-family="sans-serif" font-size="11">`,
    ...parts,
    "</svg>",
  ].join("\n") + "\n";
}
