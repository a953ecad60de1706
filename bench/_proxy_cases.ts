/**
 * The proxy's bench cases (issue 13 item 6): relays in front of the C echo
 * server (bench/_epoll_echo.c), measured by a C client
 * (bench/_tcp_load.c): 64-byte pingpong over 50 connections and a stream
 * of 16 KiB writes over 10. The relay runs on one core, the echo server
 * and the client on the other. Relays: tools/proxy.ts with no toxics and
 * with a latency 0 toxic (a toxic that changes nothing), the plain Deno
 * read/write relay (bench/_plain_relay.ts), HAProxy in TCP mode (one
 * thread) and socat `TCP-LISTEN,fork`; the echo server alone is the
 * ceiling.
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import { formatInt } from "../_format.ts";
import { runJson } from "../_process.ts";
import { ROOT, type Started, startServer } from "./_start.ts";
import { cpuSeconds, onPath, shell } from "./_probes.ts";
import { markdownTable, textTable } from "./_report.ts";
import type { ChartPanel } from "./_chart.ts";

/** What the C client prints. */
interface TcpLoadReport {
  messagesPerSecond: number;
  megabytesPerSecond: number;
  corrupted: number;
  errors: number;
}

/** One relay the cases run through. */
interface RelaySpec {
  /** Name in the table. */
  name: string;
  /** What it is, for the notes. */
  about: string;
  /** Starts it in front of the echo on `port`, or says why it cannot. */
  start(port: number, cpu: string | undefined): Promise<Started | string>;
}

/** One case: the C client's arguments and the figure it gives. */
interface ProxyCase {
  key: "pp50" | "stream";
  title: string;
  args: (port: number, seconds: number) => string[];
  figure: (report: TcpLoadReport) => number;
}

const CASES: readonly ProxyCase[] = [
  {
    key: "pp50",
    title: "50 conns 64 B pingpong msg/s",
    args: (port, s) => [String(port), "50", String(s), "pingpong", "64"],
    figure: (r) => r.messagesPerSecond,
  },
  {
    key: "stream",
    title: "stream 16 KiB x10 MB/s",
    args: (port, s) => [String(port), "10", String(s), "stream", "16384"],
    figure: (r) => r.megabytesPerSecond,
  },
];

/** Options of {@linkcode runProxyCases}. */
export interface ProxyCaseOptions {
  /** The bench's output directory: binaries and HAProxy's configuration. */
  out: string;
  /** Seconds of each run (at least 1: a relay's rate needs that long). */
  seconds: number;
  /** Runs of each case per relay, alternated; the best is kept. */
  repeat: number;
  /** The relay's core and the core of the echo server and the client. */
  cpus?: { relay: string; load: string };
  /** Builds a C source into a binary; the first error line if it fails. */
  build(source: string, binary: string): Promise<string | undefined>;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** The figures of the proxy's cases and the table of them. */
export interface ProxyCaseResult {
  /** Best figure of each case by relay name; undefined where none ran. */
  figures: Record<string, Partial<Record<ProxyCase["key"], number>>>;
  /** Relay CPU (percent of one core) in the best run, by relay and case. */
  cpu: Record<string, Partial<Record<ProxyCase["key"], number>>>;
  /** The table: a header row, then a row per relay. */
  rows: string[][];
  /** What each relay is, and what was skipped and why. */
  notes: string[];
}

/** Runs `script` in sh; whether it exited 0. */
async function shOk(script: string, ...args: string[]): Promise<boolean> {
  return (await shell(script, ...args)).ok;
}

/**
 * A loopback port nothing listens on, below the ephemeral range, for a
 * relay that cannot bind port 0 and say which it got (HAProxy, socat).
 */
async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (!await shOk('nc -z 127.0.0.1 "$1"', String(port))) return port;
  }
  throw new Error("no free port in 20000-29999");
}

/**
 * Starts `argv` (which listens on `port` and prints nothing) as a server:
 * a background shell prints the `listening on` line once the port takes
 * connections, and `exec` leaves the PID the relay's own.
 */
function startSilent(
  argv: string[],
  port: number,
  cpu: string | undefined,
): Promise<Started> {
  const wait = `(i=0; until nc -z 127.0.0.1 ${port}; do i=$((i+1)); ` +
    `[ $i -gt 200 ] && exit 1; sleep 0.05; done; ` +
    `echo "listening on 127.0.0.1:${port}") & exec "$@"`;
  return startServer(["sh", "-c", wait, "sh", ...argv], cpu, 20_000);
}

/** The relays, each in front of the echo server on `echoPort`. */
function relays(out: string, haproxy: boolean, socat: boolean): RelaySpec[] {
  const deno = (args: string[]) => [
    Deno.execPath(),
    "run",
    "--quiet",
    "--allow-net=127.0.0.1",
    ...args,
  ];
  const proxy = (toxics: string[]) => (port: number, cpu: string | undefined) =>
    startServer(
      deno([
        "tools/proxy.ts",
        "--upstream",
        `127.0.0.1:${port}`,
        ...toxics.flatMap((t) => ["--toxic", t]),
      ]),
      cpu,
      20_000,
    );
  return [
    {
      name: "proxy",
      about: "tools/proxy.ts, no toxics",
      start: proxy([]),
    },
    {
      name: "proxy latency 0",
      about: "tools/proxy.ts --toxic latency:latency=0 (both streams)",
      start: proxy(["latency:latency=0", "latency:latency=0,stream=upstream"]),
    },
    {
      name: "plain",
      about:
        "bench/_plain_relay.ts: a read/write loop per direction, 16 KiB buffer, nothing else",
      start: (port, cpu) =>
        startServer(
          deno(["bench/_plain_relay.ts", "0", String(port)]),
          cpu,
          20_000,
        ),
    },
    {
      name: "haproxy",
      about: "HAProxy in TCP mode, one thread (nbthread 1), maxconn 9000",
      async start(port, cpu) {
        if (!haproxy) return "haproxy not found (apt-get install haproxy)";
        const listen = await freePort();
        const config = `${out}/proxy_haproxy.cfg`;
        await Deno.writeTextFile(
          config,
          [
            "global",
            "  maxconn 9000",
            "  nbthread 1",
            "defaults",
            "  mode tcp",
            "  timeout connect 5s",
            "  timeout client 60s",
            "  timeout server 60s",
            "listen relay",
            `  bind 127.0.0.1:${listen}`,
            `  server echo 127.0.0.1:${port}`,
            "",
          ].join("\n"),
        );
        return startSilent(["haproxy", "-db", "-f", config], listen, cpu);
      },
    },
    {
      name: "socat",
      about: "socat TCP-LISTEN,fork (a process per connection)",
      async start(port, cpu) {
        if (!socat) return "socat not found";
        const listen = await freePort();
        return startSilent(
          [
            "socat",
            `TCP-LISTEN:${listen},bind=127.0.0.1,fork,reuseaddr`,
            `TCP:127.0.0.1:${port}`,
          ],
          listen,
          cpu,
        );
      },
    },
  ];
}

/** Installs HAProxy with apt when it is missing and this runs as root. */
async function haproxyReady(log: (line: string) => void): Promise<boolean> {
  if (await onPath("haproxy")) return true;
  if (!await shOk('[ "$(id -u)" = 0 ] && command -v apt-get')) return false;
  log("installing haproxy with apt-get");
  return await shOk("apt-get install -y haproxy >/dev/null 2>&1") &&
    await onPath("haproxy");
}

/**
 * Runs the proxy's cases: each relay started in turn in front of one C
 * echo server and measured by the C client, `repeat` rounds alternating
 * the relays, the best run of each kept.
 */
export async function runProxyCases(
  options: ProxyCaseOptions,
): Promise<ProxyCaseResult> {
  const log = options.log ?? (() => {});
  const notes: string[] = [];
  const echoBinary = `${options.out}/epoll_echo`;
  const loadBinary = `${options.out}/tcp_load`;
  for (
    const [source, binary] of [["bench/_epoll_echo.c", echoBinary], [
      "bench/_tcp_load.c",
      loadBinary,
    ]] as const
  ) {
    const failed = await options.build(source, binary);
    if (failed !== undefined) {
      return {
        figures: {},
        cpu: {},
        rows: [],
        notes: [`proxy cases skipped: ${source} did not build: ${failed}`],
      };
    }
  }
  const haproxy = await haproxyReady(log);
  const socat = await onPath("socat");
  const all = relays(options.out, haproxy, socat);
  const figures: ProxyCaseResult["figures"] = {};
  const cpu: ProxyCaseResult["cpu"] = {};
  const skipped = new Map<string, string>();
  const { relay: relayCpu, load: loadCpu } = options.cpus ?? {};
  const echo = await startServer(
    [echoBinary, "0"],
    loadCpu,
    20_000,
  );
  const echoPort = (echo.target as { port: number }).port;
  try {
    const direct = [{ name: "c echo alone", port: echoPort }];
    for (let round = 0; round < options.repeat; round++) {
      for (const spec of [...direct, ...all]) {
        if (skipped.has(spec.name)) continue;
        let started: Started | undefined;
        if ("start" in spec) {
          const result = await spec.start(echoPort, relayCpu).catch((error) =>
            `did not start: ${(error as Error).message}`
          );
          if (typeof result === "string") {
            skipped.set(spec.name, result);
            continue;
          }
          started = result;
        }
        const port = started === undefined
          ? echoPort
          : (started.target as { port: number }).port;
        try {
          for (const c of CASES) {
            const before = started && await cpuSeconds(started.pid);
            const t0 = performance.now();
            const report = await runJson<TcpLoadReport>(
              [loadBinary, ...c.args(port, Math.max(1, options.seconds))],
              {
                name: "tcp_load",
                cwd: ROOT,
                nofile: 20_000,
                ...(loadCpu === undefined ? {} : { cpu: loadCpu }),
              },
            );
            const after = started && await cpuSeconds(started.pid);
            if (report.corrupted > 0 || report.errors > 0) {
              log(
                `${spec.name} ${c.key}: ${report.corrupted} corrupted, ${report.errors} errors`,
              );
              continue;
            }
            const value = c.figure(report);
            const best = figures[spec.name]?.[c.key];
            log(`${spec.name} ${c.key} round ${round + 1}: ${value}`);
            if (best === undefined || value > best) {
              (figures[spec.name] ??= {})[c.key] = value;
              if (before !== undefined && after !== undefined) {
                (cpu[spec.name] ??= {})[c.key] = Math.round(
                  (after - before) / ((performance.now() - t0) / 1000) * 100,
                );
              }
            }
          }
        } finally {
          await started?.stop();
        }
      }
    }
  } finally {
    await echo.stop();
  }
  const base = figures.haproxy;
  const ratio = (value: number | undefined, of: number | undefined) =>
    value === undefined || of === undefined
      ? "-"
      : `${(value / of).toFixed(2)}x`;
  const rows = [[
    "relay",
    ...CASES.flatMap((c) => [c.title, "x haproxy", "relay CPU %"]),
  ]];
  for (const name of ["c echo alone", ...all.map((r) => r.name)]) {
    const f = figures[name];
    if (f === undefined) continue;
    rows.push([
      name,
      ...CASES.flatMap((c) => [
        f[c.key] === undefined ? "-" : formatInt(f[c.key]!),
        ratio(f[c.key], base?.[c.key]),
        cpu[name]?.[c.key] === undefined ? "-" : String(cpu[name]![c.key]),
      ]),
    ]);
  }
  notes.push(
    `Proxy cases: each relay ${
      relayCpu === undefined ? "unpinned" : `on cpu ${relayCpu}`
    }, the C echo (bench/_epoll_echo.c) and the C client (bench/_tcp_load.c) ${
      loadCpu === undefined ? "unpinned" : `on cpu ${loadCpu}`
    }; best of ${options.repeat} alternated rounds of ${options.seconds} s.`,
    ...all.map((r) => `${r.name}: ${r.about}`),
    ...[...skipped].map(([name, why]) => `${name} skipped: ${why}`),
  );
  return { figures, cpu, rows, notes };
}

/** The cases' table and notes, for bench.md and for the terminal. */
export function proxyReport(
  result: ProxyCaseResult,
): { markdown: string[]; text: string } {
  const heading =
    "Relays in front of the C echo server (tools/proxy.ts, issue 13):";
  if (result.rows.length === 0) {
    return { markdown: result.notes.map((n) => `- ${n}`), text: "" };
  }
  return {
    markdown: [
      "",
      heading,
      "",
      markdownTable(result.rows),
      "",
      ...result.notes.map((n) => `- ${n}`),
    ],
    text: `\n${heading}\n${textTable(result.rows)}`,
  };
}

/**
 * The cases' panel in the bench's chart: each relay's figure as a ratio to
 * HAProxy's (none when HAProxy did not run).
 */
export function proxyPanel(result: ProxyCaseResult): ChartPanel {
  const base = result.figures.haproxy;
  const rows = base === undefined ? [] : Object.keys(result.figures);
  return {
    title: "Relays in front of the C echo server: ratio to HAProxy (1.0)",
    rows,
    cases: CASES.map((c) => c.title),
    ratios: rows.map((name) =>
      CASES.map((c) => {
        const value = result.figures[name]?.[c.key];
        const of = base?.[c.key];
        return value !== undefined && of ? value / of : 0;
      })
    ),
  };
}
