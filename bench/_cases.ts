/**
 * The bench's cases and tables, as data: a case says how it is run (load.ts
 * arguments, a handshake loop, held connections, a UDP client), which table
 * it goes to and which columns it fills there, each figure with the cell it
 * is a ratio to. Adding a case is adding an entry to {@linkcode benchCases};
 * adding a table, an entry to {@linkcode TABLES}. The report and the chart
 * read nothing else.
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import { formatInt } from "../_format.ts";
import type { Target } from "./_start.ts";

/** The certificates of the TLS cases (RSA-2048, as docs/ measured). */
export const TLS_DIR = "tests/fixtures/tls";
/** The TLS servers' certificate. */
export const TLS_CERT = `${TLS_DIR}/server-rsa.pem`;
/** Its key. */
export const TLS_KEY = `${TLS_DIR}/server-rsa.key`;
/** The CA the TLS clients trust. */
export const TLS_CA = `${TLS_DIR}/ca.pem`;

/** How a case reaches its server. */
export type Transport = "tcp" | "tls" | "unix" | "udp";
/** Every transport, in the order the bench starts servers over them. */
export const TRANSPORTS: readonly Transport[] = ["tcp", "tls", "unix", "udp"];
/** The transports of a stream: every server but the UDP ones serves them. */
export const STREAMS: readonly Transport[] = ["tcp", "tls", "unix"];

/** Flows of every UDP case, each a socket of its own. */
export const UDP_FLOWS = 50;
/** Datagrams a second a flow of load.ts --udp: its default, 50,000 in all. */
const UDP_LOAD_RATE = 1_000;
/** Most datagrams a flow of the C client sends, whatever the duration. */
export const UDP_MAX_PER_FLOW = 1_000_000;

/** Clients of the handshake case, each connecting in a loop. */
export const HANDSHAKE_CLIENTS = 20;
/** Most handshakes one handshake run makes, whatever its duration. */
export const HANDSHAKE_MAX = 200_000;

/**
 * What a column shows of a cell: its headline figure (KB per connection,
 * MB/s, msg/s or handshakes/s), a latency percentile (round trip; for
 * handshakes from the connect call to the end of the handshake), the
 * datagrams lost, or the CPU of client and server.
 */
export type Metric = "figure" | "p50" | "p99" | "lost" | "cpu";

/**
 * The cell a figure is a ratio to: the same case run by server `server`
 * (the loop, Node), or case `case` run by the same server (its own TCP
 * figure). A case named by `case` is run whenever this one is.
 */
export type RatioBase = { server: string } | { case: string };

/** One column of a table, filled by one case. */
export interface ColumnSpec {
  /** Header. */
  title: string;
  /** What it shows. */
  metric: Metric;
  /** With "figure": the ratio shown beside it, as `1,234 (1.02x)`. */
  ratio?: RatioBase;
  /** The ratio alone (`1.02x`), as a column of its own. */
  ratioOnly?: boolean;
  /** Placed after every case's columns (the main table's CPU column). */
  last?: boolean;
}

/** The key of a table of the report (an entry of {@linkcode TABLES}). */
export type TableKey = string;

/** One cell of the matrix: a case every server that can runs. */
export interface CaseSpec {
  /** Key of its results (unique). */
  key: string;
  /** Title, in progress lines and notes. */
  title: string;
  /** The table it goes to. */
  table: TableKey;
  /** How the load reaches the server; default tcp. */
  transport?: Transport;
  /** load.ts arguments (port or socket added). */
  args: string[];
  /** TLS handshakes per second instead of load.ts traffic. */
  handshake?: boolean;
  /** Measure RSS per held connection (this many) instead of traffic. */
  rss?: number;
  /**
   * A UDP case: by the C client (`c`) or by load.ts --udp (`load`), at
   * `rate` datagrams a second a flow (0: one in flight, closed loop).
   */
  udp?: { client: "c" | "load"; rate: number };
  /** Whether it needs the `held` open files (skipped when the limit is low). */
  held?: boolean;
  /** Its columns in its table. */
  columns: ColumnSpec[];
  /** Drawn in the chart, as a ratio to the loop; default: all but RSS. */
  chart?: boolean;
  /**
   * A process started between the load and the server for this case (a
   * proxy), on the server's core: its command (as `ServerSpec.command`
   * gives one) for the server's address. It prints `listening on`, and the
   * load goes there; the CPU column stays the server's.
   */
  relay?: (upstream: Target) => string[];
}

/** What the tables' prose may name of the run. */
export interface TableContext {
  /** The handshake client, as a reader knows it. */
  handshakeBy: string;
  /** The C client's fixed rate, datagrams a second a flow. */
  udpRate: number;
}

/** One table of the report. */
export interface TableSpec {
  /** Which cases go to it. */
  key: TableKey;
  /** Line printed above it on the terminal (none for the first). */
  heading?: string;
  /** Title of its panel in the chart. */
  chartTitle: string;
  /** Markdown prose before and after the table in bench.md. */
  prose(ctx: TableContext): { before?: string[]; after?: string[] };
}

/** The tables, in the order they are printed. */
export const TABLES: readonly TableSpec[] = [
  {
    key: "tcp",
    chartTitle: "TCP, 64-byte pingpong and 16 KiB stream",
    prose: () => ({
      after: [
        "Ratios are to the `loop` row. p99 is the round-trip latency of one",
        "message (stream: of one 16 KiB write). `!` marks a run in which load.ts",
        "found errors (see the notes). The last column is the CPU the load",
        "generator and the server each used in the 50-connection case, in percent",
        "of one core: the one near 100 set the pace.",
      ],
    }),
  },
  {
    key: "transports",
    heading: "over TLS (RSA-2048) and a Unix socket:",
    chartTitle: "TLS (RSA-2048) and a Unix socket",
    prose: (ctx) => ({
      before: [
        `Over TLS (certificate ${TLS_CERT}, RSA-2048; load.ts --tls) and a`,
        "Unix socket (load.ts --unix), 64-byte pingpong at 50 connections;",
        `handshakes: ${HANDSHAKE_CLIENTS} clients of ${ctx.handshakeBy}, each`,
        "connecting, completing the handshake, closing and waiting for the",
        "server's close in a loop; connect p50/p99 from the connect call to the",
        "end of the handshake. TLS ratios are to the `node` row (Node's tls",
        "echo), Unix ratios to the server's own 50-connection TCP figure of",
        "this run: issue 11's targets are 1.00x or more. CPU columns are",
        "client/server in percent of one core.",
      ],
    }),
  },
  {
    key: "udp",
    heading: `over UDP (${UDP_FLOWS} flows, 64-byte datagrams):`,
    chartTitle: `UDP, ${UDP_FLOWS} flows of 64-byte datagrams`,
    prose: (ctx) => ({
      before: [
        `Over UDP, 64-byte datagrams over ${UDP_FLOWS} flows (a socket each):`,
        "one datagram in flight a flow (the next sent when its echo is back),",
        `then ${formatInt(ctx.udpRate)} and ${
          formatInt(UDP_LOAD_RATE)
        } datagrams a second a flow, open loop.`,
        "The C client is bench/_udp_load.c (tools/load.ts --udp has no",
        "closed loop: it sends on a schedule, or floods with --rate 0); the",
        "load.ts row against `c` is the load generator's own ceiling. msg/s",
        "counts datagrams back intact within 1 s; lost is what was not. p99 is",
        "the round trip. Issue 12's target: udp-echo at 1.00x the loop or",
        "more, with nothing lost.",
      ],
    }),
  },
];

/** What the cases depend on: the run's settings. */
export interface CaseSettings {
  /** Seconds per traffic case, as load.ts's `-d` takes it. */
  duration: string;
  /** Connections of the many-connections case. */
  many: number;
  /** Idle connections held in the idle and RSS cases. */
  held: number;
  /** The C client's fixed rate, datagrams a second a flow. */
  udpRate: number;
}

const LOOP = { server: "loop" } as const;
const NODE = { server: "node" } as const;

/** A throughput column with its ratio to the loop. */
function vsLoop(title: string): ColumnSpec {
  return { title, metric: "figure", ratio: LOOP };
}

/** The p99 column beside a throughput titled `title`. */
function p99Beside(title: string): ColumnSpec {
  return {
    title: `${title.replace(/ (msg|MB)\/s$/, "")} p99 ms`,
    metric: "p99",
  };
}

/** The UDP table's columns of a case titled `title`. */
function udpColumns(title: string, closedLoop: boolean): ColumnSpec[] {
  return [
    { title: `${title} (x loop)`, metric: "figure", ratio: LOOP },
    ...(closedLoop
      ? [
        {
          title: "x node",
          metric: "figure",
          ratio: NODE,
          ratioOnly: true,
        } as const,
      ]
      : []),
    { title: "lost", metric: "lost" },
    { title: "p99 ms", metric: "p99" },
    { title: "CPU % client/server", metric: "cpu" },
  ];
}

/** Every case of the bench, in the order they run and are printed. */
export function benchCases(s: CaseSettings): CaseSpec[] {
  const d = s.duration;
  const udp1 = `UDP ${UDP_FLOWS} flows, 1 in flight (C client) msg/s`;
  const udpRate = `UDP ${UDP_FLOWS} x ${
    formatInt(s.udpRate)
  }/s (C client) msg/s`;
  const udpLoad = `UDP ${UDP_FLOWS} x ${
    formatInt(UDP_LOAD_RATE)
  }/s (load.ts --udp) msg/s`;
  const many = `${formatInt(s.many)} conns msg/s`;
  const idle = `${formatInt(s.held)} idle + 50 msg/s`;
  return [
    {
      key: "pp1",
      title: "1 conn msg/s",
      table: "tcp",
      args: ["-c", "1", "-s", "64", "-d", d],
      columns: [vsLoop("1 conn msg/s")],
    },
    {
      key: "pp50",
      title: "50 conns msg/s",
      table: "tcp",
      args: ["-c", "50", "-s", "64", "-d", d],
      columns: [
        vsLoop("50 conns msg/s"),
        p99Beside("50 conns msg/s"),
        { title: "CPU % load/server (50 conns)", metric: "cpu", last: true },
      ],
    },
    {
      key: "ppmany",
      title: many,
      table: "tcp",
      args: ["-c", String(s.many), "-s", "64", "-d", d, "--ramp", "200"],
      columns: [vsLoop(many), p99Beside(many)],
    },
    {
      key: "stream",
      title: "stream 16 KiB x10 MB/s",
      table: "tcp",
      args: ["--mode", "stream", "-c", "10", "-s", "16384", "-d", d],
      columns: [vsLoop("stream 16 KiB x10 MB/s")],
    },
    {
      key: "idle",
      title: idle,
      table: "tcp",
      args: [
        ...["-c", "50", "--idle", String(s.held), "-s", "64", "-d", d],
        ...["--ramp", "200"],
      ],
      held: true,
      columns: [vsLoop(idle), p99Beside(idle)],
    },
    {
      key: "rss",
      title: `RSS KB/conn (${formatInt(s.held)} held)`,
      table: "tcp",
      args: [],
      rss: s.held,
      held: true,
      columns: [vsLoop(`RSS KB/conn (${formatInt(s.held)} held)`)],
    },
    {
      key: "tls50",
      title: "TLS 50 conns msg/s",
      table: "transports",
      transport: "tls",
      args: ["-c", "50", "-s", "64", "-d", d],
      columns: [
        { title: "TLS 50 conns msg/s (x node)", metric: "figure", ratio: NODE },
        { title: "TLS p99 ms", metric: "p99" },
        { title: "CPU % load/server (TLS)", metric: "cpu" },
      ],
    },
    {
      key: "handshake",
      title: `TLS handshakes/s (${HANDSHAKE_CLIENTS} clients)`,
      table: "transports",
      transport: "tls",
      args: [],
      handshake: true,
      columns: [
        { title: "TLS handshakes/s (x node)", metric: "figure", ratio: NODE },
        { title: "connect p50 ms", metric: "p50" },
        { title: "connect p99 ms", metric: "p99" },
        { title: "CPU % client/server (handshakes)", metric: "cpu" },
      ],
    },
    {
      key: "unix50",
      title: "Unix 50 conns msg/s",
      table: "transports",
      transport: "unix",
      args: ["-c", "50", "-s", "64", "-d", d],
      columns: [
        {
          title: "Unix 50 conns msg/s (x own TCP)",
          metric: "figure",
          // Issue 11's target: at least the server's own TCP rate.
          ratio: { case: "pp50" },
        },
        { title: "Unix p99 ms", metric: "p99" },
      ],
    },
    {
      key: "udp1",
      title: udp1,
      table: "udp",
      transport: "udp",
      args: [],
      udp: { client: "c", rate: 0 },
      columns: udpColumns(udp1, true),
    },
    {
      key: "udprate",
      title: udpRate,
      table: "udp",
      transport: "udp",
      args: [],
      udp: { client: "c", rate: s.udpRate },
      columns: udpColumns(udpRate, false),
    },
    {
      key: "udpload",
      title: udpLoad,
      table: "udp",
      transport: "udp",
      args: [],
      udp: { client: "load", rate: UDP_LOAD_RATE },
      columns: udpColumns(udpLoad, false),
    },
  ];
}
