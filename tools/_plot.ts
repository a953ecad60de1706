/**
 * The load generator's pictures, as self-contained SVG (no script, no
 * external font or stylesheet, every text escaped): the latency percentile
 * spectrum of HdrHistogram's plots (x from p0 to p99.999 on a
 * log(1/(1-p)) axis, so each nine gets the same width; y in ms), the
 * interval series (msg/s and p99 over time), and the capacity search's
 * curve of p99 against the offered rate. `tools/load.ts --svg`, `merge
 * --svg` and the bench draw with it.
 *
 * Private to this package.
 *
 * @module
 */

import { formatInt } from "../_format.ts";
import type { LatencyHistogram } from "./_histogram.ts";

/** One line of the spectrum: a label and its histogram. */
export interface LatencySeries {
  /** What the line is (a server, a run, a file). */
  label: string;
  /** Its samples. */
  histogram: LatencyHistogram;
}

/** One interval of a run, as the report's `intervals` carry it. */
export interface IntervalPoint {
  /** Seconds since the traffic started, when the interval began. */
  start: number;
  /** When it ended. */
  end: number;
  /** Messages per second in the interval. */
  messagesPerSecond: number;
  /** Its round trips' p99, ms. */
  latency: { p99: number };
}

/** One run's interval series. */
export interface IntervalSeries {
  /** What the run is. */
  label: string;
  /** Its intervals, in order. */
  intervals: IntervalPoint[];
}

/** What {@linkcode latencySvg} draws. */
export interface LatencyPlot {
  /** The title line. */
  title: string;
  /** A second, smaller line under the title (the conditions of the run). */
  subtitle?: string;
  /** The spectrum's lines. */
  series: LatencySeries[];
  /** Interval series to draw under the spectrum (msg/s, then p99). */
  intervals?: IntervalSeries[];
}

/** One step of a capacity search. */
export interface CapacityStep {
  /** Messages per second offered, all connections together. */
  offered: number;
  /** Messages per second achieved. */
  achieved: number;
  /** Median round trip, ms. */
  p50: number;
  /** 99th percentile round trip, ms. */
  p99: number;
  /** Errors in the step. */
  errors?: number;
  /**
   * Whether the step kept the target, as the search judged it (the rate
   * achieved too); without it, p99 within the target and no error.
   */
  held?: boolean;
}

/** What {@linkcode capacitySvg} draws. */
export interface CapacityPlot {
  /** The title line. */
  title: string;
  /** A second, smaller line under the title. */
  subtitle?: string;
  /** The steps, in the order run. */
  steps: CapacityStep[];
  /** The p99 the search held to, ms. */
  targetP99: number;
  /** The highest rate found that kept it, msg/s, if any. */
  answer?: number;
}

/** Colours of the lines, in order (Tableau 10: told apart in print too). */
const COLOURS = [
  "#4e79a7",
  "#e15759",
  "#59a14f",
  "#f28e2b",
  "#b07aa1",
  "#76b7b2",
  "#edc948",
  "#9c755f",
  "#ff9da7",
  "#bab0ac",
];
const WIDTH = 760;
const LEFT = 70;
const RIGHT = 40;
const FONT = 'font-family="Helvetica, Arial, sans-serif"';
/** The spectrum's nines: 0%, 90%, ... 99.999% at x = 0 ... 5. */
const NINES = 5;
const NINE_LABELS = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"];

/** `text` safe inside SVG text and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) =>
      ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[
        c
      ]!,
  );
}

/** A coordinate with at most one decimal. */
function n(v: number): string {
  return String(Math.round(v * 10) / 10);
}

/** Ticks from 0 to a round top at or above `max`: 1, 2 or 5 times 10^k. */
function ticks(max: number, want = 5, room = true): number[] {
  if (!(max > 0) || !Number.isFinite(max)) max = 1;
  const raw = max / want;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let i = 0; i * step < max + step * 1e-9; i++) out.push(i * step);
  // Headroom for a y axis: a line at the very top would lie on the frame;
  // an x axis ends where its data does.
  const top = out[out.length - 1]!;
  if (top < max || (room && top === max)) out.push(out.length * step);
  // Tidy the float steps (0.30000000000000004).
  return out.map((t) => Number(t.toPrecision(12)));
}

/** A tick label: 1,500 as 1.5k, a small ms value with its digits. */
function label(v: number, unit: "ms" | "rate"): string {
  if (unit === "rate") {
    if (v >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
    if (v >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
    return String(Number(v.toPrecision(3)));
  }
  return String(Number(v.toPrecision(3)));
}

/** A panel: where it is on the page and how its values map to it. */
interface Panel {
  x: number;
  y: number;
  w: number;
  h: number;
  xMax: number;
  yMax: number;
}

function px(p: Panel, v: number): number {
  return p.x + (v / p.xMax) * p.w;
}

function py(p: Panel, v: number): number {
  return p.y + p.h - (Math.min(v, p.yMax) / p.yMax) * p.h;
}

/** Axes, grid, tick labels and axis titles of a panel. */
function axes(
  p: Panel,
  xTicks: { at: number; text: string }[],
  yTicks: number[],
  yUnit: "ms" | "rate",
  xTitle: string,
  yTitle: string,
): string[] {
  const out: string[] = [];
  out.push(
    `<rect x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" fill="#fff" stroke="#888"/>`,
  );
  for (const t of yTicks) {
    const y = n(py(p, t));
    out.push(
      `<line x1="${p.x}" y1="${y}" x2="${
        p.x + p.w
      }" y2="${y}" stroke="#e4e4e4"/>`,
      `<text x="${
        p.x - 6
      }" y="${y}" dy="0.32em" text-anchor="end" font-size="11" fill="#333">${
        escapeXml(label(t, yUnit))
      }</text>`,
    );
  }
  for (const t of xTicks) {
    const x = n(px(p, t.at));
    out.push(
      `<line x1="${x}" y1="${p.y}" x2="${x}" y2="${
        p.y + p.h
      }" stroke="#e4e4e4"/>`,
      `<text x="${x}" y="${
        p.y + p.h + 15
      }" text-anchor="middle" font-size="11" fill="#333">${
        escapeXml(t.text)
      }</text>`,
    );
  }
  out.push(
    `<text x="${p.x + p.w / 2}" y="${
      p.y + p.h + 32
    }" text-anchor="middle" font-size="12" fill="#222">${
      escapeXml(xTitle)
    }</text>`,
    `<text transform="translate(${p.x - 50} ${
      p.y + p.h / 2
    }) rotate(-90)" text-anchor="middle" font-size="12" fill="#222">${
      escapeXml(yTitle)
    }</text>`,
  );
  return out;
}

/** A legend in the panel's top left corner, on a white ground. */
function legend(
  p: Panel,
  entries: { text: string; colour: string; dash?: string }[],
) {
  if (entries.length === 0) return [];
  const width = Math.min(
    p.w - 20,
    12 + 26 + 6.6 * Math.max(...entries.map((e) => e.text.length)),
  );
  const out = [
    `<rect x="${p.x + 10}" y="${p.y + 10}" width="${n(width)}" height="${
      8 + 16 * entries.length
    }" fill="#fff" fill-opacity="0.9" stroke="#ccc"/>`,
  ];
  entries.forEach((e, i) => {
    const y = p.y + 22 + 16 * i;
    out.push(
      `<line x1="${p.x + 18}" y1="${y}" x2="${
        p.x + 38
      }" y2="${y}" stroke="${e.colour}" stroke-width="2.5"${
        e.dash ? ` stroke-dasharray="${e.dash}"` : ""
      }/>`,
      `<text x="${p.x + 44}" y="${y}" dy="0.32em" font-size="11" fill="#222">${
        escapeXml(e.text)
      }</text>`,
    );
  });
  return out;
}

/** The document around the panels. */
function page(
  height: number,
  title: string,
  subtitle: string | undefined,
  body: string[],
): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ${FONT}>`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#fafafa"/>`,
    `<text x="${LEFT}" y="24" font-size="15" font-weight="bold" fill="#111">${
      escapeXml(title)
    }</text>`,
    subtitle
      ? `<text x="${LEFT}" y="42" font-size="11" fill="#555">${
        escapeXml(subtitle)
      }</text>`
      : "",
    ...body,
    "</svg>",
    "",
  ].filter(Boolean).join("\n");
}

/**
 * The percentiles of `h` along the spectrum: x = log10(1/(1-p)) from 0 in
 * steps of 0.01, up to the last percentile its samples can tell apart
 * (1 - 1/count, where the line reaches the maximum), at most p99.999.
 */
function spectrum(h: LatencyHistogram): [number, number][] {
  if (h.count === 0) return [];
  const end = Math.min(NINES, Math.log10(h.count));
  const points: [number, number][] = [];
  for (let i = 0;; i++) {
    const x = Math.min(i / 100, end);
    const p = 100 * (1 - 10 ** -x);
    points.push([x, h.percentile(Math.min(100, p))]);
    if (x >= end) break;
  }
  if (end < NINES) points.push([end, h.max]);
  return points;
}

/** A polyline through `points` in panel coordinates. */
function polyline(
  p: Panel,
  points: [number, number][],
  colour: string,
  dash = "",
): string {
  const d = points.map(([x, y]) => `${n(px(p, x))},${n(py(p, y))}`).join(" ");
  return `<polyline points="${d}" fill="none" stroke="${colour}" stroke-width="2" stroke-linejoin="round"${
    dash ? ` stroke-dasharray="${dash}"` : ""
  }/>`;
}

/**
 * The latency percentile spectrum of each series (HdrHistogram's plot) and,
 * when given, the runs' interval series (msg/s and p99 over time), as one
 * SVG document.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./_histogram.ts";
 * import { latencySvg } from "./_plot.ts";
 * const h = new LatencyHistogram();
 * for (let i = 1; i <= 10_000; i++) h.record(0.05 + i / 1e5);
 * const svg = latencySvg({ title: "echo", series: [{ label: "run", histogram: h }] });
 * console.log(svg.startsWith("<svg")); // true
 * ```
 */
export function latencySvg(plot: LatencyPlot): string {
  const top = plot.subtitle ? 58 : 44;
  const spec: Panel = {
    x: LEFT,
    y: top,
    w: WIDTH - LEFT - RIGHT,
    h: 300,
    xMax: NINES,
    yMax: 1,
  };
  const lines = plot.series.map((s) => spectrum(s.histogram));
  const yTicks = ticks(
    Math.max(0, ...lines.flatMap((l) => l.map(([, y]) => y))),
  );
  spec.yMax = yTicks[yTicks.length - 1]!;
  const body = axes(
    spec,
    NINE_LABELS.map((text, at) => ({ at, text })),
    yTicks,
    "ms",
    "percentile (log scale of 1/(1-p): each nine the same width)",
    "latency (ms)",
  );
  lines.forEach((l, i) => {
    if (l.length > 0) {
      body.push(polyline(spec, l, COLOURS[i % COLOURS.length]!));
    }
  });
  body.push(
    ...legend(
      spec,
      plot.series.map((s, i) => ({
        text: s.histogram.count === 0
          ? `${s.label} (no samples)`
          : `${s.label}: p50 ${fmtMs(s.histogram.percentile(50))}, p99 ${
            fmtMs(s.histogram.percentile(99))
          }, max ${fmtMs(s.histogram.max)} ms`,
        colour: COLOURS[i % COLOURS.length]!,
      })),
    ),
  );
  if (plot.series.every((s) => s.histogram.count === 0)) {
    body.push(
      `<text x="${spec.x + spec.w / 2}" y="${
        spec.y + spec.h / 2
      }" text-anchor="middle" font-size="14" fill="#888">no samples</text>`,
    );
  }
  let height = spec.y + spec.h + 48;
  const runs = (plot.intervals ?? []).filter((r) => r.intervals.length > 0);
  if (runs.length > 0) {
    const tMax = Math.max(
      ...runs.flatMap((r) => r.intervals.map((i) => i.end)),
    );
    const tTicks = ticks(tMax, 8, false);
    if (runs.length > 1) {
      // One row of labels above both panels, clear of the lines.
      let x = LEFT;
      runs.forEach((r, i) => {
        const colour = COLOURS[i % COLOURS.length]!;
        body.push(
          `<line x1="${x}" y1="${height + 4}" x2="${x + 20}" y2="${
            height + 4
          }" stroke="${colour}" stroke-width="2.5"/>`,
          `<text x="${x + 26}" y="${
            height + 4
          }" dy="0.32em" font-size="11" fill="#222">${
            escapeXml(r.label)
          }</text>`,
        );
        x += 40 + 6.6 * r.label.length;
      });
      height += 16;
    }
    for (
      const [key, title, unit] of [
        ["rate", "msg/s", "rate"],
        ["p99", "p99 (ms)", "ms"],
      ] as const
    ) {
      const value = (i: IntervalPoint) =>
        key === "rate" ? i.messagesPerSecond : i.latency.p99;
      const yt = ticks(
        Math.max(0, ...runs.flatMap((r) => r.intervals.map(value))),
        4,
      );
      const panel: Panel = {
        x: LEFT,
        y: height + 10,
        w: WIDTH - LEFT - RIGHT,
        h: 130,
        xMax: tTicks[tTicks.length - 1]!,
        yMax: yt[yt.length - 1]!,
      };
      body.push(
        ...axes(
          panel,
          tTicks.map((t) => ({ at: t, text: String(t) })),
          yt,
          unit,
          "seconds since the traffic started",
          title,
        ),
      );
      runs.forEach((r, i) => {
        // Steps: each interval's figure holds for the whole interval.
        const pts: [number, number][] = [];
        for (const iv of r.intervals) {
          pts.push([iv.start, value(iv)], [iv.end, value(iv)]);
        }
        body.push(polyline(panel, pts, COLOURS[i % COLOURS.length]!));
      });
      height = panel.y + panel.h + 44;
    }
  }
  return page(height, plot.title, plot.subtitle, body);
}

/** A latency in ms with 3 significant digits. */
function fmtMs(ms: number): string {
  return String(Number(ms.toPrecision(3)));
}

/**
 * The capacity search as a curve: p99 (and p50, dashed) against the offered
 * rate, the target p99 as a line, each step a dot (hollow where it missed
 * the target or had errors), and the answer marked.
 *
 * @example
 * ```ts
 * import { capacitySvg } from "./_plot.ts";
 * const svg = capacitySvg({
 *   title: "capacity",
 *   targetP99: 2,
 *   answer: 20_000,
 *   steps: [
 *     { offered: 10_000, achieved: 10_000, p50: 0.3, p99: 0.9 },
 *     { offered: 20_000, achieved: 19_990, p50: 0.4, p99: 1.8 },
 *     { offered: 40_000, achieved: 31_000, p50: 9, p99: 40 },
 *   ],
 * });
 * console.log(svg.includes("target p99")); // true
 * ```
 */
export function capacitySvg(plot: CapacityPlot): string {
  const top = plot.subtitle ? 58 : 44;
  const steps = [...plot.steps].sort((a, b) => a.offered - b.offered);
  const xt = ticks(Math.max(0, ...steps.map((s) => s.offered)), 6, false);
  // The curve shoots up past the target: show up to 3 times the target, or
  // the highest p99 if that is lower, so the knee stays readable.
  const highest = Math.max(0, ...steps.map((s) => s.p99));
  const yt = ticks(
    Math.max(plot.targetP99 * 1.2, Math.min(highest, plot.targetP99 * 3)),
  );
  const p: Panel = {
    x: LEFT,
    y: top,
    w: WIDTH - LEFT - RIGHT,
    h: 320,
    xMax: xt[xt.length - 1]!,
    yMax: yt[yt.length - 1]!,
  };
  const body = axes(
    p,
    xt.map((t) => ({ at: t, text: label(t, "rate") })),
    yt,
    "ms",
    "offered rate (msg/s, all connections)",
    "round trip (ms)",
  );
  const ty = n(py(p, plot.targetP99));
  body.push(
    `<line x1="${p.x}" y1="${ty}" x2="${
      p.x + p.w
    }" y2="${ty}" stroke="#e15759" stroke-width="1.5" stroke-dasharray="6 4"/>`,
    `<text x="${
      p.x + p.w - 6
    }" y="${ty}" dy="-0.4em" text-anchor="end" font-size="11" fill="#e15759">target p99 ${
      escapeXml(fmtMs(plot.targetP99))
    } ms</text>`,
  );
  if (plot.answer !== undefined) {
    const ax = n(px(p, plot.answer));
    body.push(
      `<line x1="${ax}" y1="${p.y}" x2="${ax}" y2="${
        p.y + p.h
      }" stroke="#59a14f" stroke-width="1.5" stroke-dasharray="3 3"/>`,
      `<text x="${ax}" y="${
        p.y + 14
      }" dx="4" font-size="11" fill="#2d6a27">answer ${
        escapeXml(formatInt(plot.answer))
      } msg/s</text>`,
    );
  }
  if (steps.length > 0) {
    body.push(
      polyline(p, steps.map((s) => [s.offered, s.p50]), COLOURS[0]!, "5 4"),
      polyline(p, steps.map((s) => [s.offered, s.p99]), COLOURS[0]!),
    );
  }
  for (const s of steps) {
    const missed = s.held === undefined
      ? s.p99 > plot.targetP99 || (s.errors ?? 0) > 0
      : !s.held;
    if (s.p99 > p.yMax) {
      // Off the top: say how far.
      body.push(
        `<text x="${n(px(p, s.offered))}" y="${
          p.y - 4
        }" text-anchor="middle" font-size="10" fill="#e15759">${
          escapeXml(`↑${fmtMs(s.p99)}`)
        }</text>`,
      );
    }
    body.push(
      `<circle cx="${n(px(p, s.offered))}" cy="${
        n(py(p, s.p99))
      }" r="4" fill="${missed ? "#fff" : COLOURS[0]}" stroke="${
        missed ? "#e15759" : COLOURS[0]
      }" stroke-width="1.5"><title>${
        escapeXml(
          `offered ${Math.round(s.offered)} msg/s, achieved ${
            Math.round(s.achieved)
          }, p50 ${s.p50} ms, p99 ${s.p99} ms, ${s.errors ?? 0} errors`,
        )
      }</title></circle>`,
    );
  }
  body.push(
    ...legend(p, [
      { text: "p99", colour: COLOURS[0]! },
      { text: "p50", colour: COLOURS[0]!, dash: "5 4" },
    ]),
  );
  return page(p.y + p.h + 48, plot.title, plot.subtitle, body);
}
