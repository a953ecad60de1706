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
const BAR_H = 7, GAP = 8, LEFT = 95, WIDTH = 380;

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

/** Whether case `c` is drawn. */
function charted(c: CaseSpec): boolean {
  return c.chart ?? !c.rss;
}

/** A panel's SVG elements from `top`; returns them and the next top. */
function panel(
  title: string,
  servers: string[],
  cases: CaseSpec[],
  results: Results,
  top: number,
): { parts: string[]; bottom: number } {
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
  const highest = Math.max(1.2, ...ratios.flat());
  const step = tickStep(highest);
  const max = Math.ceil(highest / step) * step;
  const barsTop = top + 18;
  const groupH = cases.length * BAR_H + GAP;
  const axisBottom = barsTop + servers.length * groupH;
  const x = (r: number) => (LEFT + (r / max) * WIDTH).toFixed(1);
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
      `<text x="${LEFT - 6}" y="${
        y0 + (cases.length * BAR_H) / 2 + 4
      }" text-anchor="end">${escapeXml(s)}</text>`,
    );
    ratios[i]!.forEach((r, j) => {
      if (r === 0) return; // not run: no bar
      parts.push(
        `<rect x="${LEFT}" y="${y0 + j * BAR_H}" width="${
          (Number(x(r)) - LEFT).toFixed(1)
        }" height="${BAR_H - 1}" fill="${COLORS[j % COLORS.length]}"/>`,
      );
    });
  });
  cases.forEach((c, j) => {
    const y = axisBottom + 24 + j * 12;
    parts.push(
      `<rect x="${LEFT}" y="${y - 8}" width="10" height="8" fill="${
        COLORS[j % COLORS.length]
      }"/>`,
      `<text x="${LEFT + 14}" y="${y}">${escapeXml(c.title)}</text>`,
    );
  });
  return { parts, bottom: axisBottom + 24 + cases.length * 12 + 8 };
}

/**
 * The chart of `cases` (every table's), `servers` in order: a panel per
 * table of `tables` with a drawn case some server ran.
 */
export function svgChart(
  tables: readonly TableSpec[],
  servers: string[],
  cases: CaseSpec[],
  results: Results,
  title: string,
): string {
  const parts: string[] = [
    `<text x="4" y="14" font-size="12" font-weight="bold">${
      escapeXml(title)
    }</text>`,
    `<text x="4" y="27" fill="#555">throughput as a ratio to the plain Deno read/write loop (1.0)</text>`,
  ];
  let top = 38;
  for (const table of tables) {
    const drawn = cases.filter((c) => c.table === table.key && charted(c));
    const ran = servers.filter((s) =>
      drawn.some((c) => {
        const cell = results.get(s)?.get(c.key);
        return cell !== undefined && figure(cell) !== undefined;
      })
    );
    if (drawn.length === 0 || ran.length === 0) continue;
    const p = panel(table.chartTitle, ran, drawn, results, top);
    parts.push(...p.parts);
    top = p.bottom;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${
      LEFT + WIDTH + 20
    }" height="${top}" font-family="sans-serif" font-size="11">`,
    ...parts,
    "</svg>",
  ].join("\n") + "\n";
}
