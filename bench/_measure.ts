/**
 * Running one case against a started server: tools/load.ts for TCP, TLS and
 * Unix traffic (and the connections held while RSS is sampled), the
 * handshake client, the UDP clients; each a process on the load's core
 * whose JSON report becomes a {@linkcode Cell}, with the server's CPU over
 * the run. Then what a cell's figure is, and which of several runs stands
 * for a case.
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import type { LoadReport, UdpLoadReport } from "../tools/load.ts";
import { sleep } from "../_cli.ts";
import { formatInt } from "../_format.ts";
import { runJson } from "../_process.ts";
import {
  type CaseSpec,
  HANDSHAKE_CLIENTS,
  HANDSHAKE_MAX,
  TLS_CA,
  type Transport,
  UDP_FLOWS,
  UDP_MAX_PER_FLOW,
} from "./_cases.ts";
import { cpuSeconds, rssKb } from "./_probes.ts";
import { ROOT, type Started, type Target } from "./_start.ts";

/** What one server did in one case. */
export interface Cell {
  /** What load.ts reported (traffic, or the connections held for RSS). */
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
export interface UdpFigures {
  /** Datagrams back intact within the loss timeout, per second. */
  messagesPerSecond: number;
  /** Datagrams sent per second. */
  sentPerSecond: number;
  /** Datagrams sent. */
  sent: number;
  /** Not back intact within the loss timeout (1 s). */
  lost: number;
  /** `lost` in percent of `sent`. */
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
export interface HandshakeReport {
  /** Handshakes completed. */
  handshakes: number;
  /** Clients that ran. */
  clients: number;
  /** Wall time of the run. */
  seconds: number;
  /** `handshakes` / `seconds`. */
  handshakesPerSecond: number;
  /** From the connect call to the end of the handshake, ms. */
  connect: { p50: number; p90: number; p99: number; max: number };
  /** Handshakes that failed. */
  failures: number;
  /** The first failure's reason. */
  firstFailure?: string;
  /** Handshakes the server resumed (should be none). */
  resumed: number;
  /** The client's CPU, percent of one core. */
  cpuPercent: number;
}

/** The handshake client the bench runs: a built C one, or Node's. */
export type HandshakeClient = { kind: "c"; path: string } | { kind: "node" };

/** How a run of one case is carried out, beside the server. */
export interface Runner {
  /** The load's core, if pinned. */
  loadCpu: string | undefined;
  /** Open files each process may hold. */
  nofile: number;
  /** Seconds per traffic case. */
  seconds: number;
  /** The handshake client, or why there is none. */
  handshake: HandshakeClient | string;
  /** The built bench/_udp_load.c, or why there is none. */
  udpClient: { path: string } | string;
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
  const port = ["--port", String(target.port)];
  return transport === "tls"
    ? [
      "--allow-net=127.0.0.1",
      `--allow-read=${ROOT}${TLS_CA}`,
      "tools/load.ts",
      ...port,
      ...["--tls", "--ca", TLS_CA],
    ]
    : ["--allow-net=127.0.0.1", "tools/load.ts", ...port];
}

/** Runs tools/load.ts with `args` against `target`; returns its report. */
function runLoadProcess(
  args: string[],
  target: Target,
  transport: Transport,
  run: Runner,
): Promise<LoadReport> {
  return runJson<LoadReport>([
    Deno.execPath(),
    "run",
    "--quiet",
    ...loadEndpoint(target, transport),
    ...["--json", "--quiet", "--allow-errors", "--drain-timeout", "3"],
    ...args,
  ], {
    name: "load.ts",
    cwd: ROOT,
    nofile: run.nofile,
    ...(run.loadCpu === undefined ? {} : { cpu: run.loadCpu }),
  });
}

/** Samples the server's RSS while a load holds `held` idle connections. */
async function measureRss(
  server: Started,
  held: number,
  run: Runner,
): Promise<{ kb: number; report: LoadReport }> {
  const before = await rssKb(server.pid);
  if (before === undefined) throw new Error("no /proc/PID/status here");
  let peak = before;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, (await rssKb(server.pid)) ?? 0);
      await sleep(50);
    }
  })();
  const report = await runLoadProcess(
    ["-c", "0", "--idle", String(held), "-d", "1.5", "--ramp", "200"],
    server.target,
    "tcp",
    run,
  ).finally(() => sampling = false);
  await sampler;
  return { kb: (peak - before) / held, report };
}

/** How a client of the load's core is run: 1,024 open files are plenty. */
function clientOptions(run: Runner, name: string) {
  return {
    name,
    cwd: ROOT,
    nofile: 1024,
    ...(run.loadCpu === undefined ? {} : { cpu: run.loadCpu }),
  };
}

/**
 * Runs the handshake client against `port`: HANDSHAKE_CLIENTS loops of
 * connect, handshake, close, for the run's seconds or HANDSHAKE_MAX
 * handshakes.
 */
function runHandshakes(
  client: HandshakeClient,
  port: number,
  run: Runner,
): Promise<HandshakeReport> {
  const argv = client.kind === "c"
    ? [
      client.path,
      String(port),
      TLS_CA,
      String(HANDSHAKE_CLIENTS),
      String(run.seconds),
      String(HANDSHAKE_MAX),
    ]
    : [
      "node",
      "bench/_handshake_load.mjs",
      ...["--port", String(port), "--ca", TLS_CA],
      ...["--clients", String(HANDSHAKE_CLIENTS)],
      ...["--seconds", String(run.seconds), "--max", String(HANDSHAKE_MAX)],
    ];
  return runJson<HandshakeReport>(
    argv,
    clientOptions(run, "the handshake client"),
  );
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
  const r = await runJson<UdpClientReport>([
    run.udpClient.path,
    String(port),
    String(UDP_FLOWS),
    String(run.seconds),
    String(rate),
    "64",
    String(UDP_MAX_PER_FLOW),
  ], clientOptions(run, "bench/_udp_load.c"));
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
  const r = await runJson<UdpLoadReport>([
    Deno.execPath(),
    "run",
    "--quiet",
    "--unstable-net",
    "--allow-net=127.0.0.1",
    "tools/load.ts",
    ...["--udp", "--port", String(port), "-c", String(UDP_FLOWS), "-s", "64"],
    "--rate",
    String(rate),
    // Bounded in count as in time.
    ...["--count", String(Math.ceil(rate * run.seconds))],
    ...["-d", String(run.seconds), "--json", "--quiet", "--allow-errors"],
  ], clientOptions(run, "load.ts --udp"));
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

/**
 * Runs case `c` against started server `s`, its load sent to `target` (a
 * relay in front of it) if given, else to the server.
 */
export async function measure(
  c: CaseSpec,
  s: Started,
  run: Runner,
  target: Target = s.target,
): Promise<Cell> {
  if (c.rss) {
    const { kb, report } = await measureRss(s, c.rss, run);
    return { rssKb: kb, report };
  }
  const cpu0 = await cpuSeconds(s.pid);
  let seconds: number;
  let cell: Cell;
  if (c.udp) {
    if ("path" in target) throw new Error("UDP needs a port");
    const udp = c.udp.client === "c"
      ? await runUdpClient(run, target.port, c.udp.rate)
      : await runUdpLoadProcess(run, target.port, c.udp.rate);
    seconds = udp.seconds;
    cell = { udp: udp.figures };
  } else if (c.handshake) {
    if (typeof run.handshake === "string") return { error: run.handshake };
    if ("path" in target) throw new Error("handshakes need a TCP port");
    const handshake = await runHandshakes(run.handshake, target.port, run);
    seconds = handshake.seconds;
    cell = { handshake };
  } else {
    const report = await runLoadProcess(
      c.args,
      target,
      c.transport ?? "tcp",
      run,
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
export function figure(cell: Cell): number | undefined {
  if (cell.rssKb !== undefined) return cell.rssKb;
  if (cell.handshake) return cell.handshake.handshakesPerSecond;
  if (cell.udp) return cell.udp.messagesPerSecond;
  if (!cell.report) return undefined;
  return cell.report.mode === "stream"
    ? cell.report.megabytesPerSecond
    : cell.report.messagesPerSecond;
}

/** What went wrong in a run that has figures, for the notes; or undefined. */
export function cellErrors(cell: Cell): string | undefined {
  if (cell.udp?.errors.length) return cell.udp.errors.join("; ");
  if (cell.report && !cell.report.ok) return cell.report.errors.join("; ");
  if (cell.handshake?.failures) {
    return `${cell.handshake.failures} handshakes failed, the first: ${cell.handshake.firstFailure}`;
  }
  return undefined;
}

/** One line of progress for a measured cell. */
export function describeCell(cell: Cell): string {
  const server = `server ${cell.serverCpu ?? "?"}%`;
  if (cell.handshake) {
    const h = cell.handshake;
    return `${
      formatInt(h.handshakesPerSecond)
    } handshakes/s, connect p50 ${h.connect.p50} ms p99 ${h.connect.p99} ms, CPU client ${h.cpuPercent}% ${server}${
      h.failures ? `, ${h.failures} failed (${h.firstFailure})` : ""
    }`;
  }
  if (cell.udp) {
    const u = cell.udp;
    return `${formatInt(u.messagesPerSecond)} msg/s back of ${
      formatInt(u.sentPerSecond)
    } sent, ${u.lost} lost (${u.lostPercent}%), p99 ${u.p99} ms, CPU client ${u.cpuPercent}% ${server}`;
  }
  if (cell.rssKb !== undefined) return `${cell.rssKb.toFixed(2)} KB/conn`;
  const r = cell.report!;
  return `${
    r.mode === "stream"
      ? `${r.megabytesPerSecond} MB/s`
      : `${formatInt(r.messagesPerSecond)} msg/s`
  }, p99 ${r.latency.p99} ms, CPU load ${r.cpu.percent}% ${server}`;
}

/**
 * The run that stands for a case: for throughput the best run, since work
 * elsewhere on the machine only ever slows a run down; for memory the
 * median (the lower middle one for an even count). A failed run only if
 * every run failed.
 */
export function pick(cells: Cell[]): Cell {
  const good = cells.filter((cell) => figure(cell) !== undefined)
    .sort((a, b) => figure(a)! - figure(b)!);
  if (good.length === 0) return cells[0] ?? { error: "not run" };
  if (good[0]!.rssKb !== undefined) {
    return good[Math.floor((good.length - 1) / 2)]!;
  }
  return good[good.length - 1]!;
}
