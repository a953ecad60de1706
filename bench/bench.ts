/**
 * `deno task bench`: the notes' "Scalability" heading, measured. Starts each
 * echo server of the project (select; completion with one and two threads)
 * and the baselines a user would otherwise write (the docs'
 * `conn.readable.pipeTo(conn.writable)`, a plain `conn.read`/`conn.write`
 * loop, Node's `socket.pipe(socket)`, and a C epoll loop as the floor), runs
 * one matrix of `tools/load.ts` against each, and prints a table with every
 * figure's ratio to the plain loop. Server and load are pinned to separate
 * cores when `taskset` exists. Writes `bench.md` and `bench.svg` to `--out`.
 *
 * A second table takes the same servers over TLS (RSA-2048, the fixtures'
 * `server-rsa`) and over a Unix socket: 64-byte pingpong at 50 connections,
 * and TLS handshakes per second by 20 clients that connect, handshake and
 * close in a loop (bench/_tls_handshake.c, or bench/_handshake_load.mjs
 * where it cannot be built), against issue 11's targets: at least Node's
 * `tls` echo over TLS, at least the server's own TCP rate over Unix.
 *
 * A third table takes the UDP echoes (the project's servers/udp_echo.ts, a
 * plain `receive`/`send` loop, Node's `dgram`, a C `recvfrom`/`sendto` loop)
 * with 64-byte datagrams over 50 flows: one datagram in flight a flow
 * (closed loop) and at a fixed rate with loss counted, both by a C client
 * (bench/_udp_load.c: `tools/load.ts --udp` sends on a schedule and never
 * waits for an echo, so it has no closed loop), and at load.ts's own
 * default rate by `tools/load.ts --udp`, whose row against the C server is
 * its ceiling. Issue 12's target: the project's server at least the loop's
 * rate, with no loss.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import {
  CliError,
  type CommandSpec,
  parseCommandLine,
  parseInteger,
  runMain,
  UsageError,
} from "../_cli.ts";
import type { LoadReport, UdpLoadReport } from "../tools/load.ts";
import { parseListeningLine } from "../_net.ts";
import { ECHO_RUNTIME_ENV, ECHO_V8_FLAGS } from "../servers/_echo.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** The certificates of the TLS cases (RSA-2048, as FINDINGS.md measured). */
const TLS_DIR = "tests/fixtures/tls";
const TLS_CERT = `${TLS_DIR}/server-rsa.pem`;
const TLS_KEY = `${TLS_DIR}/server-rsa.key`;
const TLS_CA = `${TLS_DIR}/ca.pem`;

/** How a case reaches its server. */
type Transport = "tcp" | "tls" | "unix" | "udp";
const TRANSPORTS: readonly Transport[] = ["tcp", "tls", "unix", "udp"];
/** The transports of a stream: every server but the UDP ones serves them. */
const STREAMS: readonly Transport[] = ["tcp", "tls", "unix"];

/** Flows of every UDP case, each a socket of its own. */
const UDP_FLOWS = 50;
/** Datagrams a second a flow of load.ts --udp: its default, 50,000 in all. */
const UDP_LOAD_RATE = 1_000;
/** Most datagrams a flow of the C client sends, whatever the duration. */
const UDP_MAX_PER_FLOW = 1_000_000;

/** Clients of the handshake case, each connecting in a loop. */
const HANDSHAKE_CLIENTS = 20;
/** Most handshakes one handshake run makes, whatever its duration. */
const HANDSHAKE_MAX = 200_000;

/** A server the bench can start. */
interface ServerSpec {
  /** Short name in the table. */
  name: string;
  /** What it is, for the notes under the table. */
  about: string;
  /**
   * Command and arguments over `transport` (the port 0 or the socket path
   * already in them), a reason it cannot run, or undefined where the server
   * does not serve that transport.
   */
  command: (transport: Transport) => string[] | string | undefined;
  /** Environment of the server process, beside NO_COLOR. */
  env?: Readonly<Record<string, string>>;
}

/** One cell of the matrix. */
interface CaseSpec {
  /** Column key. */
  key: string;
  /** Column title. */
  title: string;
  /** How the load reaches the server; default tcp. */
  transport?: Transport;
  /** load.ts arguments (port or socket added). */
  args: string[];
  /** TLS handshakes per second instead of load.ts traffic. */
  handshake?: boolean;
  /** Measure RSS per held connection instead of traffic. */
  rss?: number;
  /** Show a p99 latency column beside the throughput. */
  p99?: boolean;
  /**
   * A UDP case: by the C client (`c`) or by load.ts --udp (`load`), at
   * `rate` datagrams a second a flow (0: one in flight, closed loop).
   */
  udp?: { client: "c" | "load"; rate: number };
}

/** What one server did in one case. */
interface Cell {
  report?: LoadReport;
  /** What the handshake client reported. */
  handshake?: HandshakeReport;
  /** RSS per held connection, KB. */
  rssKb?: number;
  /** What a UDP client reported. */
  udp?: UdpFigures;
  /** Server CPU over the run, percent of one core. */
  serverCpu?: number;
  /** Why there is no figure. */
  error?: string;
}

/** A UDP run's figures, from the C client or from load.ts --udp. */
interface UdpFigures {
  /** Datagrams back intact within the loss timeout, per second. */
  messagesPerSecond: number;
  /** Datagrams sent per second. */
  sentPerSecond: number;
  sent: number;
  /** Not back intact within the loss timeout (1 s). */
  lost: number;
  lostPercent: number;
  /** Round trip, ms. */
  p99: number;
  /** The client's CPU, percent of one core. */
  cpuPercent: number;
  /** What the client found wrong beside loss (corrupted datagrams). */
  errors: string[];
}

/** What bench/_udp_load.c prints. */
interface UdpClientReport {
  seconds: number;
  sent: number;
  received: number;
  lost: number;
  corrupted: number;
  sendErrors: number;
  messagesPerSecond: number;
  sentPerSecond: number;
  lostPercent: number;
  rtt: { p50: number; p99: number; max: number };
  cpuPercent: number;
}

/** What bench/_tls_handshake.c (or bench/_handshake_load.mjs) prints. */
interface HandshakeReport {
  handshakes: number;
  clients: number;
  seconds: number;
  handshakesPerSecond: number;
  /** From the connect call to the end of the handshake, ms. */
  connect: { p50: number; p90: number; p99: number; max: number };
  failures: number;
  firstFailure?: string;
  /** Handshakes the server resumed (should be none). */
  resumed: number;
  /** The client's CPU, percent of one core. */
  cpuPercent: number;
}

const SPEC: CommandSpec = {
  name: "bench/bench.ts",
  summary:
    "Benchmark the project's echo servers against the baselines, with tools/load.ts.",
  options: {
    quick: {
      type: "boolean",
      description:
        "Short version: 0.5 s per case, 200 connections instead of 1000, 2000 held instead of 10,000.",
    },
    out: {
      type: "string",
      default: "bench-results",
      arg: "DIR",
      description: "Where bench.md and bench.svg go.",
    },
    only: {
      type: "string",
      arg: "NAMES",
      description:
        "Comma-separated servers to run (loop is always run: it is the yardstick).",
    },
    repeat: {
      type: "string",
      default: "1",
      arg: "N",
      description:
        "Run the matrix N times, in rounds over all servers; report each case's best run (RSS: median).",
    },
    duration: {
      type: "string",
      arg: "SECONDS",
      description: "Seconds per traffic case (default 5, 0.5 with --quick).",
    },
    transports: {
      type: "string",
      default: "tcp,tls,unix,udp",
      arg: "LIST",
      description:
        "Comma-separated transports to run: tcp (the main matrix), tls, unix (which runs the TCP 50-connection case too: its yardstick), udp.",
    },
    "udp-rate": {
      type: "string",
      default: "2000",
      arg: "N",
      description:
        `Datagrams a second a flow in the C client's fixed-rate UDP case (${UDP_FLOWS} flows).`,
    },
  },
  epilog:
    `Servers: c (bench/_epoll_echo.c, built with gcc), loop (bench/_loop_echo.ts),
select (servers/select_echo.ts), completion-1 and completion-2
(servers/completion_echo.ts --threads 1 / 2), node (bench/_node_echo.mjs),
pipe (bench/_pipe_echo.ts). A missing file or tool is skipped with a note.
Over TLS (RSA-2048, ${TLS_CERT}): loop, select, completion-1,
completion-2 and node (Node's tls); over a Unix socket (in a mktemp -d
directory): loop, select, completion-1 and node. Over UDP: c, loop, node
(Node's dgram) and udp-echo (servers/udp_echo.ts), with bench/_udp_load.c
(built with gcc) and tools/load.ts --udp as clients.

Needs an open-files limit of 10,100 in each process (server and load) for the
10,000-connection cases; the bench raises the soft limit up to the hard one,
and says what to do when the hard limit is lower.`,
};

/** Whether `cmd` is on PATH. */
async function onPath(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${cmd}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * The soft and hard open-files limits, as the shell reports them (Deno lets
 * only `--allow-all` read /proc/self/limits); undefined if unknown.
 */
async function openFilesLimit(): Promise<
  { soft: number; hard: number } | undefined
> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", "ulimit -Sn; ulimit -Hn"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const [soft, hard] = new TextDecoder().decode(out.stdout).trim().split(
      "\n",
    );
    const n = (s?: string) => s === "unlimited" ? Infinity : Number(s);
    const limit = { soft: n(soft), hard: n(hard) };
    return Number.isNaN(limit.soft) || Number.isNaN(limit.hard)
      ? undefined
      : limit;
  } catch {
    return undefined;
  }
}

/**
 * VmRSS of process `pid` in KB (Linux), or undefined. Deno lets only
 * `--allow-all` read another process's /proc entry, so `cat` reads it.
 */
async function rssKb(pid: number): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", 'exec cat "/proc/$1/status"', "sh", String(pid)],
      stdout: "piped",
      stderr: "null",
    }).output();
    const m = new TextDecoder().decode(out.stdout).match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time process `pid` has used (user + system, all threads), in seconds,
 * from /proc/PID/stat; undefined where there is none.
 */
async function cpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", 'cat "/proc/$1/stat"; getconf CLK_TCK', "sh", String(pid)],
      stdout: "piped",
      stderr: "null",
    }).output();
    const [stat, hz] = new TextDecoder().decode(out.stdout).split("\n");
    // Fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are the 12th and 13th.
    const fields = stat!.slice(stat!.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / (Number(hz) || 100) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs a command line with the CPU pin and the open-files limit applied. */
function wrap(argv: string[], cpu: string | undefined, nofile: number) {
  const pinned = cpu === undefined ? argv : ["taskset", "-c", cpu, ...argv];
  // sh raises the soft limit (up to the hard one), then execs the command,
  // so the PID the bench sees is the server's own.
  return [
    "sh",
    "-c",
    `ulimit -n ${nofile} 2>/dev/null; exec "$@"`,
    "sh",
    ...pinned,
  ];
}

/** Where a started server listens: a loopback port or a socket path. */
type Target = { port: number } | { path: string };

/** A started server: where it listens, its PID, and how to stop it. */
interface Started {
  target: Target;
  pid: number;
  stop(): Promise<void>;
}

async function startServer(
  argv: string[],
  cpu: string | undefined,
  nofile: number,
  env: Readonly<Record<string, string>> = {},
): Promise<Started> {
  const [cmd, ...args] = wrap(argv, cpu, nofile);
  const child = new Deno.Command(cmd!, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited
    }
  }, 15_000);
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  clearTimeout(timer);
  const where = parseListeningLine(text.split("\n")[0]!.trim());
  // Keep draining stdout so the server never blocks on a full pipe.
  const draining = (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch {
      // closed
    }
  })();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // exited
    }
    const kill = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited
      }
    }, 3_000);
    await child.status;
    clearTimeout(kill);
    await draining;
    await stderr;
  };
  if (!where) {
    await stop();
    throw new Error(
      `did not print "listening on": ${(await stderr).trim().split("\n")[0]}`,
    );
  }
  const target = "path" in where ? { path: where.path } : { port: where.port };
  return { target, pid: child.pid, stop };
}

/**
 * load.ts's permissions and endpoint options for `target` over `transport`:
 * loopback only, the CA file for TLS, the one socket path for Unix.
 */
function loadEndpoint(target: Target, transport: Transport): string[] {
  if ("path" in target) {
    return [
      `--allow-net=unix:${target.path}`,
      `--allow-read=${target.path}`,
      `--allow-write=${target.path}`,
      "tools/load.ts",
      "--unix",
      target.path,
    ];
  }
  return transport === "tls"
    ? [
      "--allow-net=127.0.0.1",
      `--allow-read=${ROOT}${TLS_CA}`,
      "tools/load.ts",
      "--port",
      String(target.port),
      "--tls",
      "--ca",
      TLS_CA,
    ]
    : [
      "--allow-net=127.0.0.1",
      "tools/load.ts",
      "--port",
      String(target.port),
    ];
}

/** Runs tools/load.ts with `args` against `target`; returns its report. */
async function runLoadProcess(
  args: string[],
  target: Target,
  transport: Transport,
  cpu: string | undefined,
  nofile: number,
): Promise<LoadReport> {
  const argv = wrap(
    [
      Deno.execPath(),
      "run",
      "--quiet",
      ...loadEndpoint(target, transport),
      "--json",
      "--quiet",
      "--allow-errors",
      "--drain-timeout",
      "3",
      ...args,
    ],
    cpu,
    nofile,
  );
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!text.startsWith("{")) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new Error(err || `load.ts exited ${out.code}`);
  }
  return JSON.parse(text);
}

/** Samples `pid`'s RSS while a load holds `held` idle connections. */
async function measureRss(
  server: Started,
  held: number,
  cpu: string | undefined,
  nofile: number,
): Promise<{ kb: number; report: LoadReport }> {
  const before = await rssKb(server.pid);
  if (before === undefined) throw new Error("no /proc/PID/status here");
  let peak = before;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, (await rssKb(server.pid)) ?? 0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const report = await runLoadProcess(
    ["-c", "0", "--idle", String(held), "-d", "1.5", "--ramp", "200"],
    server.target,
    "tcp",
    cpu,
    nofile,
  );
  sampling = false;
  await sampler;
  return { kb: (peak - before) / held, report };
}

/** The handshake client the bench runs: a built C one, or Node's. */
type HandshakeClient = { kind: "c"; path: string } | { kind: "node" };

/**
 * Runs the handshake client against `port`: HANDSHAKE_CLIENTS loops of
 * connect, handshake, close, for `seconds` or HANDSHAKE_MAX handshakes.
 */
async function runHandshakes(
  client: HandshakeClient,
  port: number,
  seconds: number,
  cpu: string | undefined,
): Promise<HandshakeReport> {
  const args = client.kind === "c"
    ? [
      client.path,
      String(port),
      TLS_CA,
      String(HANDSHAKE_CLIENTS),
      String(seconds),
      String(HANDSHAKE_MAX),
    ]
    : [
      "node",
      "bench/_handshake_load.mjs",
      "--port",
      String(port),
      "--ca",
      TLS_CA,
      "--clients",
      String(HANDSHAKE_CLIENTS),
      "--seconds",
      String(seconds),
      "--max",
      String(HANDSHAKE_MAX),
    ];
  const argv = wrap(args, cpu, 1024);
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!text.startsWith("{")) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new Error(err || `the handshake client exited ${out.code}`);
  }
  return JSON.parse(text);
}

/** How a run of one case is carried out, beside the server. */
interface Runner {
  loadCpu: string | undefined;
  nofile: number;
  /** Seconds per traffic case. */
  seconds: number;
  /** The handshake client, or why there is none. */
  handshake: HandshakeClient | string;
  /** The built bench/_udp_load.c, or why there is none. */
  udpClient: { path: string } | string;
}

/**
 * Runs bench/_udp_load.c against `port`: UDP_FLOWS flows of 64-byte
 * datagrams, one in flight each (`rate` 0) or `rate` a second each.
 */
async function runUdpClient(
  run: Runner,
  port: number,
  rate: number,
): Promise<{ seconds: number; figures: UdpFigures }> {
  if (typeof run.udpClient === "string") throw new Error(run.udpClient);
  const argv = wrap(
    [
      run.udpClient.path,
      String(port),
      String(UDP_FLOWS),
      String(run.seconds),
      String(rate),
      "64",
      String(UDP_MAX_PER_FLOW),
    ],
    run.loadCpu,
    1024,
  );
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!text.startsWith("{")) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new Error(err || `bench/_udp_load.c exited ${out.code}`);
  }
  const r: UdpClientReport = JSON.parse(text);
  const errors = [
    ...(r.corrupted ? [`${r.corrupted} datagrams came back corrupted`] : []),
    ...(r.sendErrors ? [`${r.sendErrors} sends failed`] : []),
    ...(r.received === 0 ? ["nothing came back"] : []),
  ];
  return {
    seconds: r.seconds,
    figures: {
      messagesPerSecond: r.messagesPerSecond,
      sentPerSecond: r.sentPerSecond,
      sent: r.sent,
      lost: r.lost,
      lostPercent: r.lostPercent,
      p99: r.rtt.p99,
      cpuPercent: r.cpuPercent,
      errors,
    },
  };
}

/** Runs tools/load.ts --udp against `port` at `rate` datagrams a second a flow. */
async function runUdpLoadProcess(
  run: Runner,
  port: number,
  rate: number,
): Promise<{ seconds: number; figures: UdpFigures }> {
  const argv = wrap(
    [
      Deno.execPath(),
      "run",
      "--quiet",
      "--unstable-net",
      "--allow-net=127.0.0.1",
      "tools/load.ts",
      "--udp",
      "--port",
      String(port),
      "-c",
      String(UDP_FLOWS),
      "-s",
      "64",
      "--rate",
      String(rate),
      // Bounded in count as in time.
      "--count",
      String(Math.ceil(rate * run.seconds)),
      "-d",
      String(run.seconds),
      "--json",
      "--quiet",
      "--allow-errors",
    ],
    run.loadCpu,
    1024,
  );
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!text.startsWith("{")) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new Error(err || `load.ts --udp exited ${out.code}`);
  }
  const r: UdpLoadReport = JSON.parse(text);
  return {
    seconds: r.seconds,
    figures: {
      messagesPerSecond: r.receivedPerSecond,
      sentPerSecond: r.sentPerSecond,
      sent: r.sent,
      lost: r.lost,
      lostPercent: r.lostPercent,
      p99: r.latency.p99,
      cpuPercent: r.cpu.percent,
      errors: r.ok ? [] : r.errors,
    },
  };
}

/** Runs one case against a started server. */
async function measure(c: CaseSpec, s: Started, run: Runner): Promise<Cell> {
  const { loadCpu, nofile } = run;
  if (c.rss) {
    const { kb, report } = await measureRss(s, c.rss, loadCpu, nofile);
    return { rssKb: kb, report };
  }
  const cpu0 = await cpuSeconds(s.pid);
  let seconds: number;
  let cell: Cell;
  if (c.udp) {
    if ("path" in s.target) throw new Error("UDP needs a port");
    const udp = c.udp.client === "c"
      ? await runUdpClient(run, s.target.port, c.udp.rate)
      : await runUdpLoadProcess(run, s.target.port, c.udp.rate);
    seconds = udp.seconds;
    cell = { udp: udp.figures };
  } else if (c.handshake) {
    if (typeof run.handshake === "string") return { error: run.handshake };
    if ("path" in s.target) throw new Error("handshakes need a TCP port");
    const handshake = await runHandshakes(
      run.handshake,
      s.target.port,
      run.seconds,
      loadCpu,
    );
    seconds = handshake.seconds;
    cell = { handshake };
  } else {
    const report = await runLoadProcess(
      c.args,
      s.target,
      c.transport ?? "tcp",
      loadCpu,
      nofile,
    );
    seconds = report.seconds;
    cell = { report };
  }
  const cpu1 = await cpuSeconds(s.pid);
  // Over the traffic seconds, though it includes the connect ramp and the
  // drain: a slight overestimate.
  if (cpu0 !== undefined && cpu1 !== undefined) {
    cell.serverCpu = Math.round(((cpu1 - cpu0) / seconds) * 100);
  }
  return cell;
}

/** The headline figure of a cell: KB per connection, MB/s or msg/s. */
function figure(cell: Cell): number | undefined {
  if (cell.rssKb !== undefined) return cell.rssKb;
  if (cell.handshake) return cell.handshake.handshakesPerSecond;
  if (cell.udp) return cell.udp.messagesPerSecond;
  if (!cell.report) return undefined;
  return cell.report.mode === "stream"
    ? cell.report.megabytesPerSecond
    : cell.report.messagesPerSecond;
}

/** One line of progress for a measured cell. */
function describeCell(cell: Cell): string {
  if (cell.handshake) {
    const h = cell.handshake;
    return `${
      fmtInt(h.handshakesPerSecond)
    } handshakes/s, connect p50 ${h.connect.p50} ms p99 ${h.connect.p99} ms, CPU client ${h.cpuPercent}% server ${
      cell.serverCpu ?? "?"
    }%${h.failures ? `, ${h.failures} failed (${h.firstFailure})` : ""}`;
  }
  if (cell.udp) {
    const u = cell.udp;
    return `${fmtInt(u.messagesPerSecond)} msg/s back of ${
      fmtInt(u.sentPerSecond)
    } sent, ${u.lost} lost (${u.lostPercent}%), p99 ${u.p99} ms, CPU client ${u.cpuPercent}% server ${
      cell.serverCpu ?? "?"
    }%`;
  }
  const r = cell.report!;
  if (cell.rssKb !== undefined) return `${cell.rssKb.toFixed(2)} KB/conn`;
  return `${
    r.mode === "stream"
      ? `${r.megabytesPerSecond} MB/s`
      : `${fmtInt(r.messagesPerSecond)} msg/s`
  }, p99 ${r.latency.p99} ms, CPU load ${r.cpu.percent}% server ${
    cell.serverCpu ?? "?"
  }%`;
}

/**
 * The run that stands for a case: for throughput the best run, since work
 * elsewhere on the machine only ever slows a run down; for memory the
 * median (the lower middle one for an even count). A failed run only if
 * every run failed.
 */
function pick(cells: Cell[]): Cell {
  const good = cells.filter((cell) => figure(cell) !== undefined)
    .sort((a, b) => figure(a)! - figure(b)!);
  if (good.length === 0) return cells[0] ?? { error: "not run" };
  if (good[0]!.rssKb !== undefined) {
    return good[Math.floor((good.length - 1) / 2)]!;
  }
  return good[good.length - 1]!;
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function fmtNum(n: number, digits: number): string {
  return n >= 100 ? fmtInt(n) : n.toFixed(digits);
}

/** Which figure a column shows. */
interface Column {
  title: string;
  /** The figure from a cell, or undefined. */
  value(cell: Cell): number | undefined;
  /** How to print it. */
  format(n: number): string;
  /** Whether a ratio to the loop is shown (throughput and RSS). */
  ratio: boolean;
}

function columnsFor(cases: CaseSpec[]): { key: string; col: Column }[] {
  const cols: { key: string; col: Column }[] = [];
  for (const c of cases) {
    if (c.rss) {
      cols.push({
        key: c.key,
        col: {
          title: c.title,
          value: (cell) => cell.rssKb,
          format: (n) => n < 1 ? n.toFixed(2) : n.toFixed(1),
          ratio: true,
        },
      });
      continue;
    }
    const stream = c.args.includes("stream");
    cols.push({
      key: c.key,
      col: {
        title: c.title,
        value: (cell) =>
          cell.report
            ? (stream
              ? cell.report.megabytesPerSecond
              : cell.report.messagesPerSecond)
            : undefined,
        format: (n) => fmtNum(n, 1),
        ratio: true,
      },
    });
    if (c.p99) {
      cols.push({
        key: c.key,
        col: {
          title: `${c.title.replace(/ (msg|MB)\/s$/, "")} p99 ms`,
          value: (cell) => cell.report?.latency.p99,
          format: (n) => n < 10 ? n.toFixed(2) : n.toFixed(0),
          ratio: false,
        },
      });
    }
  }
  return cols;
}

/** Builds the rows of the table (strings), first row the header. */
function tableRows(
  servers: string[],
  cases: CaseSpec[],
  results: Map<string, Map<string, Cell>>,
): string[][] {
  const cols = columnsFor(cases);
  const rows: string[][] = [[
    "server",
    ...cols.map((c) => c.col.title),
    "CPU % load/server (50 conns)",
  ]];
  const base = results.get("loop");
  for (const s of servers) {
    const cells = results.get(s)!;
    const row = [s];
    for (const { key, col } of cols) {
      const cell = cells.get(key);
      const v = cell ? col.value(cell) : undefined;
      if (v === undefined || cell === undefined) {
        row.push(cell?.error ? "failed" : "-");
        continue;
      }
      let text = col.format(v);
      const b = base?.get(key);
      const bv = b ? col.value(b) : undefined;
      if (col.ratio && bv) text += ` (${(v / bv).toFixed(2)}x)`;
      if (cell.report && !cell.report.ok) text += " !";
      row.push(text);
    }
    const pp50 = cells.get("pp50");
    row.push(
      pp50?.report
        ? `${pp50.report.cpu.percent}/${pp50.serverCpu ?? "?"}`
        : "-",
    );
    rows.push(row);
  }
  return rows;
}

/**
 * The rows of the TLS and Unix table, first row the header: over TLS each
 * server's ratio to Node's `tls` echo (the `node` row), over Unix its ratio
 * to its own TCP figure in the same run (the targets of issue 11).
 */
function transportRows(
  servers: string[],
  cases: CaseSpec[],
  results: Map<string, Map<string, Cell>>,
): string[][] {
  const has = (key: string) => cases.some((c) => c.key === key);
  const ms = (n: number) => n < 10 ? n.toFixed(2) : n.toFixed(0);
  const cols: {
    title: string;
    key: string;
    value(cell: Cell): number | undefined;
    format(n: number): string;
    /** The cell this one is a ratio to, if any. */
    base?(server: string): Cell | undefined;
  }[] = [];
  const node = (key: string) => () => results.get("node")?.get(key);
  if (has("tls50")) {
    cols.push(
      {
        title: "TLS 50 conns msg/s (x node)",
        key: "tls50",
        value: (c) => c.report?.messagesPerSecond,
        format: fmtInt,
        base: node("tls50"),
      },
      {
        title: "TLS p99 ms",
        key: "tls50",
        value: (c) => c.report?.latency.p99,
        format: ms,
      },
      {
        title: "CPU % load/server (TLS)",
        key: "tls50",
        value: (c) => c.report ? 0 : undefined,
        format: () => "",
      },
    );
  }
  if (has("handshake")) {
    cols.push(
      {
        title: "TLS handshakes/s (x node)",
        key: "handshake",
        value: (c) => c.handshake?.handshakesPerSecond,
        format: fmtInt,
        base: node("handshake"),
      },
      {
        title: "connect p50 ms",
        key: "handshake",
        value: (c) => c.handshake?.connect.p50,
        format: ms,
      },
      {
        title: "connect p99 ms",
        key: "handshake",
        value: (c) => c.handshake?.connect.p99,
        format: ms,
      },
      {
        title: "CPU % client/server (handshakes)",
        key: "handshake",
        value: (c) => c.handshake ? 0 : undefined,
        format: () => "",
      },
    );
  }
  if (has("unix50")) {
    cols.push(
      {
        title: "Unix 50 conns msg/s (x own TCP)",
        key: "unix50",
        value: (c) => c.report?.messagesPerSecond,
        format: fmtInt,
        base: (server) => results.get(server)?.get("pp50"),
      },
      {
        title: "Unix p99 ms",
        key: "unix50",
        value: (c) => c.report?.latency.p99,
        format: ms,
      },
    );
  }
  const rows: string[][] = [["server", ...cols.map((c) => c.title)]];
  for (const server of servers) {
    const cells = results.get(server)!;
    if (!cols.some((col) => cells.has(col.key))) continue;
    const row = [server];
    for (const col of cols) {
      const cell = cells.get(col.key);
      const v = cell ? col.value(cell) : undefined;
      if (v === undefined || cell === undefined) {
        row.push(cell?.error ? "failed" : "-");
        continue;
      }
      if (col.title.startsWith("CPU %")) {
        const client = cell.handshake?.cpuPercent ?? cell.report?.cpu.percent;
        row.push(`${client ?? "?"}/${cell.serverCpu ?? "?"}`);
        continue;
      }
      let text = col.format(v);
      const b = col.base?.(server);
      const bv = b ? figure(b) : undefined;
      if (bv) text += ` (${(v / bv).toFixed(2)}x)`;
      if ((cell.report && !cell.report.ok) || cell.handshake?.failures) {
        text += " !";
      }
      row.push(text);
    }
    rows.push(row);
  }
  return rows;
}

/**
 * The rows of the UDP table, first row the header: per case the datagrams
 * back a second (with the ratio to the `loop` row, and for the closed loop
 * to `node`), what was lost, p99, and the CPU of client and server.
 */
function udpRows(
  servers: string[],
  cases: CaseSpec[],
  results: Map<string, Map<string, Cell>>,
): string[][] {
  const ms = (n: number) => n < 10 ? n.toFixed(2) : n.toFixed(0);
  const head = ["server"];
  for (const c of cases) {
    head.push(`${c.title} (x loop)`);
    if (c.udp!.rate === 0) head.push("x node");
    head.push("lost", "p99 ms", "CPU % client/server");
  }
  const rows: string[][] = [head];
  for (const server of servers) {
    const cells = results.get(server)!;
    if (!cases.some((c) => cells.has(c.key))) continue;
    const row = [server];
    for (const c of cases) {
      const cell = cells.get(c.key);
      const width = c.udp!.rate === 0 ? 5 : 4;
      const u = cell?.udp;
      if (!u) {
        row.push(...Array(width).fill(cell?.error ? "failed" : "-"));
        continue;
      }
      const ratio = (base: Cell | undefined) => {
        const bv = base?.udp?.messagesPerSecond;
        return bv ? ` (${(u.messagesPerSecond / bv).toFixed(2)}x)` : "";
      };
      row.push(
        `${fmtInt(u.messagesPerSecond)}${
          ratio(results.get("loop")?.get(c.key))
        }${u.errors.length ? " !" : ""}`,
      );
      if (c.udp!.rate === 0) {
        const bv = results.get("node")?.get(c.key)?.udp?.messagesPerSecond;
        row.push(bv ? `${(u.messagesPerSecond / bv).toFixed(2)}x` : "-");
      }
      row.push(
        `${fmtInt(u.lost)} (${
          u.lostPercent === 0 ? "0" : u.lostPercent.toFixed(3)
        }%)`,
        ms(u.p99),
        `${u.cpuPercent}/${cell.serverCpu ?? "?"}`,
      );
    }
    rows.push(row);
  }
  return rows;
}

function markdownTable(rows: string[][]): string {
  const [head, ...body] = rows;
  const lines = [
    `| ${head!.join(" | ")} |`,
    `|${head!.map((_, i) => i === 0 ? "---" : "---:").join("|")}|`,
    ...body.map((r) => `| ${r.join(" | ")} |`),
  ];
  return lines.join("\n");
}

function textTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) =>
    Math.max(...rows.map((r) => r[i]!.length))
  );
  return rows.map((r) =>
    r.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))
      .join("  ")
  ).join("\n");
}

/** A small grouped bar chart of throughput ratios to the loop. */
function svgChart(
  servers: string[],
  cases: CaseSpec[],
  results: Map<string, Map<string, Cell>>,
  title: string,
): string {
  const cols = columnsFor(cases).filter((c) =>
    c.col.ratio && !cases.find((k) => k.key === c.key)?.rss
  );
  const colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"];
  const base = results.get("loop");
  const ratios = servers.map((s) =>
    cols.map(({ key, col }) => {
      const c = results.get(s)?.get(key);
      const b = base?.get(key);
      const v = c ? col.value(c) : undefined;
      const bv = b ? col.value(b) : undefined;
      return v !== undefined && bv ? v / bv : 0;
    })
  );
  const max = Math.ceil(Math.max(1.2, ...ratios.flat()) * 2) / 2;
  const barH = 7, gap = 8, left = 95, width = 380, top = 34;
  const groupH = cols.length * barH + gap;
  const axisBottom = top + servers.length * groupH;
  const height = axisBottom + 24 + cols.length * 12;
  const x = (r: number) => (left + (r / max) * width).toFixed(1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${
      left + width + 20
    }" height="${height}" font-family="sans-serif" font-size="11">`,
    `<text x="4" y="14" font-size="12" font-weight="bold">${
      escapeXml(title)
    }</text>`,
    `<text x="4" y="27" fill="#555">throughput as a ratio to the plain Deno read/write loop (1.0)</text>`,
  ];
  for (let t = 0; t <= max + 1e-9; t += 0.5) {
    parts.push(
      `<line x1="${x(t)}" y1="${top - 3}" x2="${
        x(t)
      }" y2="${axisBottom}" stroke="${t === 1 ? "#000" : "#ddd"}"${
        t === 1 ? ' stroke-dasharray="3,2"' : ""
      }/>`,
      `<text x="${x(t)}" y="${axisBottom + 11}" text-anchor="middle">${
        t.toFixed(1)
      }</text>`,
    );
  }
  servers.forEach((s, i) => {
    const y0 = top + i * groupH;
    parts.push(
      `<text x="${left - 6}" y="${
        y0 + (cols.length * barH) / 2 + 4
      }" text-anchor="end">${escapeXml(s)}</text>`,
    );
    ratios[i]!.forEach((r, j) => {
      parts.push(
        `<rect x="${left}" y="${y0 + j * barH}" width="${
          (Number(x(r)) - left).toFixed(1)
        }" height="${barH - 1}" fill="${colors[j % colors.length]}"/>`,
      );
    });
  });
  cols.forEach(({ col }, j) => {
    const y = axisBottom + 24 + j * 12;
    parts.push(
      `<rect x="${left}" y="${y - 8}" width="10" height="8" fill="${
        colors[j % colors.length]
      }"/>`,
      `<text x="${left + 14}" y="${y}">${escapeXml(col.title)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * The command line: runs the matrix and writes the results.
 *
 * @param args Command-line arguments, as `Deno.args`.
 * @returns The exit code: 0 when every run completed.
 */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, SPEC);
  if (!parsed) return 0;
  const v = parsed.values;
  const quick = v.quick === true;
  const out = String(v.out);
  let seconds = quick ? 0.5 : 5;
  if (v.duration !== undefined) {
    seconds = Number(v.duration);
    if (!(seconds > 0 && seconds <= 600)) {
      throw new UsageError(
        `Cannot parse --duration "${v.duration}": expected seconds above 0, at most 600`,
      );
    }
  }
  const d = String(seconds);
  const repeat = parseInteger(v.repeat, "--repeat", 1, 20);
  const udpRate = parseInteger(v["udp-rate"], "--udp-rate", 1, 100_000);
  const transports = new Set<Transport>();
  for (const t of String(v.transports).split(",").map((s) => s.trim())) {
    if (!TRANSPORTS.includes(t as Transport)) {
      throw new UsageError(
        `Cannot parse --transports "${t}": expected some of ${
          TRANSPORTS.join(", ")
        }`,
      );
    }
    transports.add(t as Transport);
  }
  const many = quick ? 200 : 1000;
  const held = quick ? 2000 : 10_000;
  const cases: CaseSpec[] = [
    {
      key: "pp1",
      title: "1 conn msg/s",
      args: ["-c", "1", "-s", "64", "-d", d],
    },
    {
      key: "pp50",
      title: "50 conns msg/s",
      args: ["-c", "50", "-s", "64", "-d", d],
      p99: true,
    },
    {
      key: "ppmany",
      title: `${fmtInt(many)} conns msg/s`,
      args: ["-c", String(many), "-s", "64", "-d", d, "--ramp", "200"],
      p99: true,
    },
    {
      key: "stream",
      title: "stream 16 KiB x10 MB/s",
      args: ["--mode", "stream", "-c", "10", "-s", "16384", "-d", d],
    },
    {
      key: "idle",
      title: `${fmtInt(held)} idle + 50 msg/s`,
      args: [
        "-c",
        "50",
        "--idle",
        String(held),
        "-s",
        "64",
        "-d",
        d,
        "--ramp",
        "200",
      ],
      p99: true,
    },
    {
      key: "rss",
      title: `RSS KB/conn (${fmtInt(held)} held)`,
      args: [],
      rss: held,
    },
    {
      key: "tls50",
      title: "TLS 50 conns msg/s",
      transport: "tls",
      args: ["-c", "50", "-s", "64", "-d", d],
    },
    {
      key: "handshake",
      title: `TLS handshakes/s (${HANDSHAKE_CLIENTS} clients)`,
      transport: "tls",
      args: [],
      handshake: true,
    },
    {
      key: "unix50",
      title: "Unix 50 conns msg/s",
      transport: "unix",
      args: ["-c", "50", "-s", "64", "-d", d],
    },
    {
      key: "udp1",
      title: `UDP ${UDP_FLOWS} flows, 1 in flight (C client) msg/s`,
      transport: "udp",
      args: [],
      udp: { client: "c", rate: 0 },
    },
    {
      key: "udprate",
      title: `UDP ${UDP_FLOWS} x ${fmtInt(udpRate)}/s (C client) msg/s`,
      transport: "udp",
      args: [],
      udp: { client: "c", rate: udpRate },
    },
    {
      key: "udpload",
      title: `UDP ${UDP_FLOWS} x ${
        fmtInt(UDP_LOAD_RATE)
      }/s (load.ts --udp) msg/s`,
      transport: "udp",
      args: [],
      udp: { client: "load", rate: UDP_LOAD_RATE },
    },
  ];

  // Open files: each process holds `held` + 50 sockets and a few more.
  const need = held + 300;
  const limit = await openFilesLimit();
  let nofile = need;
  const notes: string[] = [];
  let skipHeld = false;
  if (limit && limit.hard < need) {
    skipHeld = true;
    nofile = limit.hard === Infinity ? need : limit.hard;
    notes.push(
      `open-files limit ${limit.hard} (hard) is below the ${need} the ${
        fmtInt(held)
      }-connection cases need: they are skipped. Raise it (as root: ` +
        `\`ulimit -Hn ${need}\`, or \`nofile\` in /etc/security/limits.conf, ` +
        `or LimitNOFILE= for a service)${
          quick ? "" : ", or run with --quick (2,000 connections)"
        }.`,
    );
  }
  const activeCases = cases.filter((c) =>
    !(skipHeld && (c.rss || c.key === "idle")) &&
    (transports.has(c.transport ?? "tcp") ||
      // The Unix figures are compared with the TCP ones of the same run.
      (c.key === "pp50" && transports.has("unix")))
  );
  const hasTls = exists(TLS_CERT) && exists(TLS_KEY) && exists(TLS_CA);
  if (transports.has("tls") && !hasTls) {
    notes.push(`TLS cases skipped: ${TLS_DIR} lacks its certificates`);
  }
  // One directory of our own for the Unix sockets, made by the shell (the
  // bench may write only to --out); every server removes its socket on stop.
  let socketDir: string | undefined;
  if (transports.has("unix")) {
    const made = await new Deno.Command("sh", {
      args: ["-c", "mktemp -d"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!made.success) {
      throw new CliError(
        `Cannot make a directory for the Unix sockets: ${
          new TextDecoder().decode(made.stderr).trim()
        }`,
      );
    }
    socketDir = new TextDecoder().decode(made.stdout).trim();
  }
  const socket = `${socketDir}/echo.sock`;

  const cores = navigator.hardwareConcurrency;
  const pin = cores >= 2 && await onPath("taskset");
  const serverCpu = pin ? "0" : undefined;
  const loadCpu = pin ? "1" : undefined;
  if (!pin) {
    notes.push(
      cores < 2
        ? "one core: server and load share it"
        : "taskset not found: server and load are not pinned",
    );
  }

  // The project's echo servers run as the README says to run them, with
  // ECHO_V8_FLAGS and ECHO_RUNTIME_ENV; the baselines as their authors
  // would, with neither.
  // Over Unix a server may reach only its socket; over TLS it reads the
  // certificate under ROOT, which every Deno server may read.
  const denoServer = (
    script: string,
    extra: string[] = [],
    flags: string[] = [],
    over: readonly Transport[] = STREAMS,
  ) =>
  (transport: Transport) => {
    if (!over.includes(transport)) return undefined;
    if (!exists(script)) return `${script} does not exist yet`;
    const where = transport === "unix"
      ? [
        `--allow-net=unix:${socket}`,
        `--allow-read=${ROOT},${socket}`,
        `--allow-write=${socket}`,
        script,
        "--unix",
        socket,
      ]
      : [
        "--allow-net=127.0.0.1",
        `--allow-read=${ROOT}`,
        script,
        "--port",
        "0",
        ...(transport === "tls"
          ? ["--tls", "--cert", TLS_CERT, "--key", TLS_KEY]
          : []),
      ];
    return [Deno.execPath(), "run", "--quiet", ...flags, ...where, ...extra];
  };
  // A UDP server may reach loopback peers only (Deno checks every send).
  const udpDenoServer = (script: string, extra: string[]) =>
    exists(script)
      ? [
        Deno.execPath(),
        "run",
        "--quiet",
        "--unstable-net",
        "--allow-net=127.0.0.1",
        script,
        "--port",
        "0",
        ...extra,
      ]
      : `${script} does not exist yet`;
  const hasGcc = await onPath("gcc");
  const hasNode = await onPath("node");
  const servers: ServerSpec[] = [
    {
      name: "c",
      about:
        "bench/_epoll_echo.c: single-threaded C epoll loop (over UDP a blocking recvfrom/sendto loop), the fastest server here: its row shows what load.ts itself can reach",
      command: (transport) => {
        if (transport !== "tcp" && transport !== "udp") return undefined;
        if (!hasGcc) return "gcc not found";
        return [
          `${out}/epoll_echo`,
          "0",
          ...(transport === "udp" ? ["udp"] : []),
        ];
      },
    },
    {
      name: "loop",
      about:
        "bench/_loop_echo.ts: per-connection conn.read/conn.write loop, 16 KiB buffer (the yardstick); over UDP one listenDatagram receive/send loop",
      command: (transport) =>
        transport === "udp"
          ? udpDenoServer("bench/_loop_echo.ts", ["--udp"])
          : denoServer("bench/_loop_echo.ts")(transport),
    },
    {
      name: "select",
      about: "servers/select_echo.ts",
      command: denoServer("servers/select_echo.ts", [
        "--max-connections",
        "20000",
      ], [ECHO_V8_FLAGS]),
      env: ECHO_RUNTIME_ENV,
    },
    {
      name: "completion-1",
      about: "servers/completion_echo.ts --threads 1",
      command: denoServer("servers/completion_echo.ts", [
        "--max-connections",
        "20000",
        "--threads",
        "1",
      ], [ECHO_V8_FLAGS]),
      env: ECHO_RUNTIME_ENV,
    },
    {
      name: "completion-2",
      about:
        "servers/completion_echo.ts --threads 2 (its second thread shares core 0 when pinned)",
      // --threads needs TCP: no Unix socket.
      command: denoServer(
        "servers/completion_echo.ts",
        [
          "--max-connections",
          "20000",
          "--threads",
          "2",
        ],
        [ECHO_V8_FLAGS],
        ["tcp", "tls"],
      ),
      env: ECHO_RUNTIME_ENV,
    },
    {
      name: "node",
      about:
        "bench/_node_echo.mjs: Node's net (tls over TLS), socket.pipe(socket); over UDP dgram, each message sent back",
      command: (transport) => {
        if (!hasNode) return "node not found on PATH";
        if (transport === "udp") {
          return ["node", "bench/_node_echo.mjs", "0", "--udp"];
        }
        if (transport === "unix") {
          return ["node", "bench/_node_echo.mjs", "--unix", socket];
        }
        return [
          "node",
          "bench/_node_echo.mjs",
          "0",
          ...(transport === "tls"
            ? ["--tls", "--cert", TLS_CERT, "--key", TLS_KEY]
            : []),
        ];
      },
    },
    {
      name: "pipe",
      about:
        "bench/_pipe_echo.ts: the docs' conn.readable.pipeTo(conn.writable)",
      command: denoServer("bench/_pipe_echo.ts", [], [], ["tcp"]),
    },
    {
      name: "udp-echo",
      about:
        "servers/udp_echo.ts, as the README runs it (--allow-net=127.0.0.1, no runtime settings)",
      command: (transport) =>
        transport === "udp"
          ? udpDenoServer("servers/udp_echo.ts", [])
          : undefined,
    },
  ];
  let chosen = servers;
  if (v.only !== undefined) {
    const names = String(v.only).split(",").map((s) => s.trim());
    for (const n of names) {
      if (!servers.some((s) => s.name === n)) {
        throw new UsageError(
          `Cannot parse --only "${n}": expected some of ${
            servers.map((s) => s.name).join(", ")
          }`,
        );
      }
    }
    chosen = servers.filter((s) => s.name === "loop" || names.includes(s.name));
  }

  await Deno.mkdir(out, { recursive: true });
  if (hasGcc && chosen.some((s) => s.name === "c")) {
    const cc = await new Deno.Command("gcc", {
      args: ["-O2", "-o", `${out}/epoll_echo`, "bench/_epoll_echo.c"],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!cc.success) {
      throw new CliError(
        `Cannot build bench/_epoll_echo.c: ${
          new TextDecoder().decode(cc.stderr).split("\n")[0]
        }`,
      );
    }
  }

  // The handshake client: C with OpenSSL where it builds (cheap enough for
  // the server to set the pace), else Node's.
  let handshake: HandshakeClient | string = "not needed";
  if (hasTls && activeCases.some((c) => c.handshake)) {
    handshake = hasNode
      ? { kind: "node" }
      : "neither gcc with OpenSSL's headers nor node found";
    if (hasGcc) {
      const cc = await new Deno.Command("gcc", {
        args: [
          "-O2",
          "-o",
          `${out}/tls_handshake`,
          "bench/_tls_handshake.c",
          "-lssl",
          "-lcrypto",
        ],
        cwd: ROOT,
        stdout: "null",
        stderr: "piped",
      }).output();
      if (cc.success) handshake = { kind: "c", path: `${out}/tls_handshake` };
      else {
        notes.push(
          `bench/_tls_handshake.c did not build (${
            new TextDecoder().decode(cc.stderr).split("\n")[0]
          }): ${
            hasNode ? "handshakes by the Node client" : "no handshake case"
          }`,
        );
      }
    }
  }

  // The UDP client: C, built here, or no C-client UDP case.
  let udpClient: { path: string } | string = "not needed";
  if (activeCases.some((c) => c.udp?.client === "c")) {
    udpClient = "gcc not found: no C-client UDP case";
    if (hasGcc) {
      const cc = await new Deno.Command("gcc", {
        args: ["-O2", "-o", `${out}/udp_load`, "bench/_udp_load.c"],
        cwd: ROOT,
        stdout: "null",
        stderr: "piped",
      }).output();
      udpClient = cc.success
        ? { path: `${out}/udp_load` }
        : `bench/_udp_load.c did not build: ${
          new TextDecoder().decode(cc.stderr).split("\n")[0]
        }`;
    }
    if (typeof udpClient === "string") notes.push(udpClient);
  }

  const started = performance.now();
  console.error(
    `bench: ${chosen.length} servers x ${activeCases.length} cases, ${d} s each${
      pin ? ", server on cpu 0, load on cpu 1" : ""
    }`,
  );
  const results = new Map<string, Map<string, Cell>>();
  const ran: string[] = [];
  const runnable: {
    spec: ServerSpec;
    argv: Map<Transport, string[]>;
    cases: CaseSpec[];
  }[] = [];
  let failures = 0;
  for (const server of chosen) {
    const argv = new Map<Transport, string[]>();
    for (const t of TRANSPORTS) {
      if (!activeCases.some((c) => (c.transport ?? "tcp") === t)) continue;
      if (t === "tls" && !hasTls) continue;
      const a = server.command(t);
      if (typeof a === "string") {
        notes.push(`${server.name} skipped over ${t}: ${a}`);
        console.error(`${server.name}: skipped over ${t} (${a})`);
      } else if (a) argv.set(t, a);
    }
    if (argv.size === 0) continue;
    const cases = activeCases.filter((c) =>
      argv.has(c.transport ?? "tcp") &&
      !(c.handshake && typeof handshake === "string") &&
      !(c.udp?.client === "c" && typeof udpClient === "string") &&
      // Without the TCP matrix, TCP runs only as the yardstick of Unix.
      (transports.has("tcp") || c.key !== "pp50" || argv.has("unix"))
    );
    runnable.push({ spec: server, argv, cases });
    ran.push(server.name);
    results.set(server.name, new Map());
  }
  // Every run of every case, by server and case; rounds go over all servers
  // in turn, so that a drift of the machine weighs on all of them alike.
  const runs = new Map<string, Map<string, Cell[]>>(
    runnable.map((
      r,
    ) => [r.spec.name, new Map(r.cases.map((c) => [c.key, []]))]),
  );
  const run: Runner = { loadCpu, nofile, seconds, handshake, udpClient };
  // A server that cannot start over a transport once will not start over it
  // for the next case: by "NAME/TRANSPORT".
  const broken = new Set<string>();
  try {
    for (let round = 1; round <= repeat; round++) {
      const tag = repeat > 1 ? ` (round ${round})` : "";
      for (const { spec, argv, cases } of runnable) {
        for (const c of cases) {
          const transport = c.transport ?? "tcp";
          if (broken.has(`${spec.name}/${transport}`)) continue;
          // A fresh server per case: one case's leftovers (held buffers, a
          // starved connection) must not weigh on the next.
          let s: Started;
          try {
            s = await startServer(
              argv.get(transport)!,
              serverCpu,
              nofile,
              spec.env,
            );
          } catch (error) {
            const msg = error instanceof Error ? error.message : String(error);
            broken.add(`${spec.name}/${transport}`);
            for (const k of cases) {
              if ((k.transport ?? "tcp") !== transport) continue;
              runs.get(spec.name)!.get(k.key)!.push({ error: msg });
            }
            notes.push(
              `${spec.name} failed to start over ${transport}${tag}: ${msg}`,
            );
            console.error(`${spec.name}: failed to start: ${msg}`);
            failures++;
            continue;
          }
          let cell: Cell;
          try {
            cell = await measure(c, s, run);
            const errors = cell.udp?.errors.length
              ? cell.udp.errors.join("; ")
              : cell.report && !cell.report.ok
              ? cell.report.errors.join("; ")
              : cell.handshake?.failures
              ? `${cell.handshake.failures} handshakes failed, the first: ${cell.handshake.firstFailure}`
              : undefined;
            if (errors) notes.push(`${spec.name}, ${c.title}${tag}: ${errors}`);
            if (cell.error) throw new Error(cell.error);
            console.error(
              `${spec.name}: ${c.title}${tag}: ${describeCell(cell)}${
                errors ? ", ERRORS" : ""
              }`,
            );
          } catch (error) {
            const msg = error instanceof Error ? error.message : String(error);
            cell = { error: msg };
            notes.push(`${spec.name}, ${c.title}${tag}: ${msg}`);
            failures++;
          } finally {
            await s.stop();
          }
          runs.get(spec.name)!.get(c.key)!.push(cell);
        }
      }
    }
  } finally {
    if (socketDir !== undefined) {
      await new Deno.Command("sh", {
        args: ["-c", 'rm -rf -- "$1"', "sh", socketDir],
      }).output();
    }
  }
  for (const { spec, cases } of runnable) {
    for (const c of cases) {
      results.get(spec.name)!.set(
        c.key,
        pick(runs.get(spec.name)!.get(c.key)!),
      );
    }
  }

  const tcpCases = activeCases.filter((c) => (c.transport ?? "tcp") === "tcp");
  // The main table lists the servers that ran a TCP case.
  const rows = tableRows(
    ran.filter((name) => tcpCases.some((c) => results.get(name)!.has(c.key))),
    tcpCases,
    results,
  );
  const overCases = activeCases.filter((c) =>
    c.transport === "tls" || c.transport === "unix"
  );
  const udpCases = activeCases.filter((c) => c.transport === "udp");
  const udpTable = udpCases.length
    ? udpRows(ran, udpCases, results)
    : undefined;
  const overRows = overCases.length
    ? transportRows(ran, overCases, results)
    : undefined;
  const handshakeBy = typeof handshake === "string"
    ? undefined
    : handshake.kind === "c"
    ? "bench/_tls_handshake.c (C, OpenSSL)"
    : "bench/_handshake_load.mjs (Node's tls)";
  const when = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const machine =
    `${cores} cores, ${Deno.build.os} ${Deno.build.arch}, Deno ${Deno.version.deno}`;
  const md = [
    `Measured ${when} on ${machine}${
      pin ? "; server pinned to cpu 0, load generator to cpu 1" : ""
    }; ${d} s per case${quick ? " (--quick)" : ""}${
      repeat > 1
        ? `; best of ${repeat} runs per case (RSS: median), rounds over all servers in turn`
        : ""
    }.`,
    ...(rows.length > 1
      ? [
        "",
        markdownTable(rows),
        "",
        "Ratios are to the `loop` row. p99 is the round-trip latency of one",
        "message (stream: of one 16 KiB write). `!` marks a run in which load.ts",
        "found errors (see the notes). The last column is the CPU the load",
        "generator and the server each used in the 50-connection case, in percent",
        "of one core: the one near 100 set the pace.",
      ]
      : []),
    ...(overRows && overRows.length > 1
      ? [
        "",
        `Over TLS (certificate ${TLS_CERT}, RSA-2048; load.ts --tls) and a`,
        "Unix socket (load.ts --unix), 64-byte pingpong at 50 connections;",
        `handshakes: ${HANDSHAKE_CLIENTS} clients of ${
          handshakeBy ?? "none"
        }, each`,
        "connecting, completing the handshake, closing and waiting for the",
        "server's close in a loop; connect p50/p99 from the connect call to the",
        "end of the handshake. TLS ratios are to the `node` row (Node's tls",
        "echo), Unix ratios to the server's own 50-connection TCP figure of",
        "this run: issue 11's targets are 1.00x or more. CPU columns are",
        "client/server in percent of one core.",
        "",
        markdownTable(overRows),
      ]
      : []),
    ...(udpTable && udpTable.length > 1
      ? [
        "",
        `Over UDP, 64-byte datagrams over ${UDP_FLOWS} flows (a socket each):`,
        "one datagram in flight a flow (the next sent when its echo is back),",
        `then ${fmtInt(udpRate)} and ${
          fmtInt(UDP_LOAD_RATE)
        } datagrams a second a flow, open loop.`,
        "The C client is bench/_udp_load.c (tools/load.ts --udp has no",
        "closed loop: it sends on a schedule, or floods with --rate 0); the",
        "load.ts row against `c` is the load generator's own ceiling. msg/s",
        "counts datagrams back intact within 1 s; lost is what was not. p99 is",
        "the round trip. Issue 12's target: udp-echo at 1.00x the loop or",
        "more, with nothing lost.",
        "",
        markdownTable(udpTable),
      ]
      : []),
    "",
    ...ran.map((name) =>
      `- ${name}: ${servers.find((s) => s.name === name)!.about}`
    ),
    ...(notes.length ? ["", "Notes:", ...notes.map((n) => `- ${n}`)] : []),
    "",
  ].join("\n");
  await Deno.writeTextFile(`${out}/bench.md`, md);
  await Deno.writeTextFile(
    `${out}/bench.svg`,
    svgChart(ran, tcpCases, results, `Echo servers, ${machine}`),
  );
  if (rows.length > 1) console.log(textTable(rows));
  if (overRows && overRows.length > 1) {
    console.log(`\nover TLS (RSA-2048) and a Unix socket:`);
    console.log(textTable(overRows));
  }
  if (udpTable && udpTable.length > 1) {
    console.log(`\nover UDP (${UDP_FLOWS} flows, 64-byte datagrams):`);
    console.log(textTable(udpTable));
  }
  for (const n of notes) console.log(`note: ${n}`);
  console.log(
    `wrote ${out}/bench.md and ${out}/bench.svg in ${
      ((performance.now() - started) / 1000).toFixed(0)
    } s`,
  );
  return failures > 0 ? 1 : 0;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(`${ROOT}${path}`);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) runMain(main);
