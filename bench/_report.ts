/**
 * The bench's report: one table per entry of `TABLES`, its rows the servers
 * that ran any of its cases, its columns what each case's data asks for
 * (a figure with its ratio, latency, loss, CPU), as Markdown for bench.md
 * and as aligned text for the terminal.
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import { alignColumns, formatInt } from "../_format.ts";
import type {
  CaseSpec,
  ColumnSpec,
  Metric,
  RatioBase,
  TableSpec,
} from "./_cases.ts";
import { type Cell, figure } from "./_measure.ts";

/** Every case's chosen cell, by server name, then case key. */
export type Results = Map<string, Map<string, Cell>>;

/** A table made: its spec and its rows, the header first. */
export interface Table {
  /** What it is. */
  spec: TableSpec;
  /** Rows of cells, the first the header. */
  rows: string[][];
}

/** The cell `base` names, for case `key` of `server`. */
function baseCell(
  results: Results,
  base: RatioBase,
  server: string,
  key: string,
): Cell | undefined {
  return "server" in base
    ? results.get(base.server)?.get(key)
    : results.get(server)?.get(base.case);
}

/** Milliseconds as the tables print them. */
function ms(n: number): string {
  return n < 10 ? n.toFixed(2) : n.toFixed(0);
}

/** A throughput (or KB) as the tables print it. */
function formatFigure(n: number, cell: Cell): string {
  if (cell.rssKb !== undefined) return n < 1 ? n.toFixed(2) : n.toFixed(1);
  return n >= 100 ? formatInt(n) : n.toFixed(1);
}

/** The latency `metric` of a cell (handshakes: connect; else round trip). */
function latency(cell: Cell, metric: "p50" | "p99"): number | undefined {
  if (cell.handshake) return cell.handshake.connect[metric];
  if (cell.udp) return metric === "p99" ? cell.udp.p99 : undefined;
  return cell.report?.latency[metric];
}

/** Whether the run found errors: `!` beside its figure. */
function flawed(cell: Cell): boolean {
  return (cell.report !== undefined && !cell.report.ok) ||
    (cell.handshake?.failures ?? 0) > 0 || (cell.udp?.errors.length ?? 0) > 0;
}

/** The text of column `col` for `server`'s `cell` of case `key`. */
function cellText(
  col: ColumnSpec,
  cell: Cell | undefined,
  server: string,
  key: string,
  results: Results,
): string {
  const missing = cell?.error ? "failed" : "-";
  if (cell === undefined) return missing;
  const value: Record<Metric, () => string | undefined> = {
    figure: () => {
      const v = figure(cell);
      if (v === undefined) return undefined;
      const b = col.ratio && baseCell(results, col.ratio, server, key);
      const bv = b ? figure(b) : undefined;
      const ratio = bv ? (v / bv).toFixed(2) + "x" : undefined;
      if (col.ratioOnly) return ratio ?? "-";
      return `${formatFigure(v, cell)}${ratio ? ` (${ratio})` : ""}${
        flawed(cell) ? " !" : ""
      }`;
    },
    p50: () => {
      const v = latency(cell, "p50");
      return v === undefined ? undefined : ms(v);
    },
    p99: () => {
      const v = latency(cell, "p99");
      return v === undefined ? undefined : ms(v);
    },
    lost: () => {
      const u = cell.udp;
      if (!u) return undefined;
      const pct = u.lostPercent === 0 ? "0" : u.lostPercent.toFixed(3);
      return `${formatInt(u.lost)} (${pct}%)`;
    },
    cpu: () => {
      if (figure(cell) === undefined) return undefined;
      const client = cell.handshake?.cpuPercent ?? cell.udp?.cpuPercent ??
        cell.report?.cpu.percent;
      return `${client ?? "?"}/${cell.serverCpu ?? "?"}`;
    },
  };
  return value[col.metric]() ?? missing;
}

/**
 * The rows of table `spec` over `cases` (those of the table), first row
 * the header; undefined if no server ran any of them.
 */
export function tableRows(
  spec: TableSpec,
  servers: string[],
  cases: CaseSpec[],
  results: Results,
): Table | undefined {
  const mine = cases.filter((c) => c.table === spec.key);
  const cols = [
    ...mine.flatMap((c) =>
      c.columns.filter((col) => !col.last).map((col) => ({ c, col }))
    ),
    ...mine.flatMap((c) =>
      c.columns.filter((col) => col.last).map((col) => ({ c, col }))
    ),
  ];
  const rows: string[][] = [["server", ...cols.map(({ col }) => col.title)]];
  for (const server of servers) {
    const cells = results.get(server);
    if (!cells || !mine.some((c) => cells.has(c.key))) continue;
    rows.push([
      server,
      ...cols.map(({ c, col }) =>
        cellText(col, cells.get(c.key), server, c.key, results)
      ),
    ]);
  }
  return rows.length > 1 ? { spec, rows } : undefined;
}

/** Rows as a Markdown table, the first column left-aligned. */
export function markdownTable(rows: string[][]): string {
  const [head, ...body] = rows;
  return [
    `| ${head!.join(" | ")} |`,
    `|${head!.map((_, i) => i === 0 ? "---" : "---:").join("|")}|`,
    ...body.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** Rows as aligned text, the figures right-aligned. */
export function textTable(rows: string[][]): string {
  return alignColumns(rows, (i) => i > 0).join("\n");
}
