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

import {
  CliError,
  type CommandSpec,
  parseCommandLine,
  parseInteger,
  runMain,
  UsageError,
} from "../_cli.ts";
import { formatInt } from "../_format.ts";
import { runCommand } from "../_process.ts";
import { withWriteAccess } from "../_write_access.ts";
import {
  benchCases,
  type CaseSpec,
  TABLES,
  TLS_CA,
  TLS_CERT,
  TLS_DIR,
  TLS_KEY,
  type Transport,
  TRANSPORTS,
  UDP_FLOWS,
} from "./_cases.ts";
import { svgChart } from "./_chart.ts";
import {
  type Cell,
  cellErrors,
  describeCell,
  type HandshakeClient,
  measure,
  pick,
  type Runner,
} from "./_measure.ts";
import { onPath, openFilesLimit, shell } from "./_probes.ts";
import {
  markdownTable,
  type Results,
  type Table,
  tableRows,
  textTable,
} from "./_report.ts";
import { proxyPanel, proxyReport, runProxyCases } from "./_proxy_cases.ts";
import { latencyPlots } from "./_latency_plots.ts";
import { benchServers, type ServerSpec } from "./_servers.ts";
import { ROOT, type Started, startServer } from "./_start.ts";

/**
 * The flags of `deno task bench` but its `--allow-write=bench-results`: for
 * another `--out DIR` the bench runs itself again with these and
 * `--allow-write=DIR`.
 */
export const BENCH_FLAGS: readonly string[] = [
  "--allow-run=sh,gcc",
  "--allow-read=.",
];

const SPEC: CommandSpec = {
  name: "bench/bench.ts",
  summary:
    "Benchmark the project's echo servers against the baselines, with tools/load.ts.",
  options: {
    quick: {
      type: "boolean",
      description:
        "Short version of every case: 0.5 s each, 200 connections instead of 1000, 2000 held instead of 10,000 (about 90 s in all on 2 cores; --only and --transports run less).",
    },
    out: {
      type: "string",
      default: "bench-results",
      arg: "DIR",
      description:
        "Where bench.md, bench.svg and the built C programs go; for a DIR other than bench-results it runs itself again with --allow-write=DIR.",
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
      default: "tcp,tls,unix,udp,relay",
      arg: "LIST",
      description:
        "Comma-separated transports to run: tcp (the main matrix), tls, unix (which runs the TCP 50-connection case too: its yardstick), udp, relay (tools/proxy.ts beside HAProxy, socat and a plain relay; not with --only).",
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
With relay in --transports (as by default) and no --only, relays in front
of the C echo server, measured by
bench/_tcp_load.c (built with gcc): tools/proxy.ts with no toxics and with a
latency 0 toxic, bench/_plain_relay.ts, HAProxy in TCP mode (installed with
apt-get when missing and run as root, else skipped) and socat TCP-LISTEN,fork.

Needs an open-files limit of 10,100 in each process (server and load) for the
10,000-connection cases; the bench raises the soft limit up to the hard one,
and says what to do when the hard limit is lower.`,
};

/** The run's settings, from the command line. */
interface Settings {
  quick: boolean;
  out: string;
  seconds: number;
  repeat: number;
  udpRate: number;
  transports: Set<Transport>;
  /** Whether to run the relays' cases (`relay` in `--transports`). */
  relays: boolean;
  only?: string[];
}

function parseSettings(v: Record<string, unknown>): Settings {
  const quick = v.quick === true;
  let seconds = quick ? 0.5 : 5;
  if (v.duration !== undefined) {
    seconds = Number(v.duration);
    if (!(seconds > 0 && seconds <= 600)) {
      throw new UsageError(
        `Cannot parse --duration "${v.duration}": expected seconds above 0, at most 600`,
      );
    }
  }
  const transports = new Set<Transport>();
  let relays = false;
  for (const t of String(v.transports).split(",").map((s) => s.trim())) {
    if (t === "relay") {
      relays = true;
    } else if (TRANSPORTS.includes(t as Transport)) {
      transports.add(t as Transport);
    } else {
      throw new UsageError(
        `Cannot parse --transports "${t}": expected some of ${
          [...TRANSPORTS, "relay"].join(", ")
        }`,
      );
    }
  }
  if (relays && v.only !== undefined && transports.size === 0) {
    throw new UsageError(
      "Cannot use --only with --transports relay alone: the relays' cases run without --only",
    );
  }
  return {
    quick,
    out: String(v.out),
    seconds,
    repeat: parseInteger(v.repeat, "--repeat", 1, 20),
    udpRate: parseInteger(v["udp-rate"], "--udp-rate", 1, 100_000),
    transports,
    relays,
    ...(v.only === undefined
      ? {}
      : { only: String(v.only).split(",").map((s) => s.trim()) }),
  };
}

/** The cases whose figures case `c`'s ratios take (by the same server). */
function ratioCases(c: CaseSpec): string[] {
  return c.columns.flatMap((col) =>
    col.ratio && "case" in col.ratio ? [col.ratio.case] : []
  );
}

/**
 * The cases of the chosen transports, and those a chosen case's ratio
 * needs (Unix's own TCP figure), minus those that need more open files
 * than the hard limit allows.
 */
function activeCases(
  cases: CaseSpec[],
  transports: Set<Transport>,
  skipHeld: boolean,
): CaseSpec[] {
  const chosen = cases.filter((c) => transports.has(c.transport ?? "tcp"));
  const needed = new Set(chosen.flatMap(ratioCases));
  return cases.filter((c) =>
    !(skipHeld && c.held) && (chosen.includes(c) || needed.has(c.key))
  );
}

/** Builds `source` into `binary` with gcc; the first error line if it fails. */
async function build(
  source: string,
  binary: string,
  libs: string[] = [],
): Promise<string | undefined> {
  const cc = await runCommand(["gcc", "-O2", "-o", binary, source, ...libs], {
    cwd: ROOT,
  });
  return cc.code === 0 ? undefined : cc.stderr.split("\n")[0];
}

/** A server that runs, with its command per transport and its cases. */
interface Runnable {
  spec: ServerSpec;
  argv: Map<Transport, string[]>;
  cases: CaseSpec[];
}

/**
 * Runs every case of every server `repeat` times, in rounds over all
 * servers, so that a drift of the machine weighs on all of them alike; a
 * fresh server per case, so one case's leftovers (held buffers, a starved
 * connection) do not weigh on the next. Returns each case's every run.
 */
async function runRounds(
  runnable: Runnable[],
  repeat: number,
  run: Runner,
  serverCpu: string | undefined,
  notes: string[],
): Promise<{ runs: Map<string, Map<string, Cell[]>>; failures: number }> {
  const runs = new Map(
    runnable.map((r) => [
      r.spec.name,
      new Map(r.cases.map((c) => [c.key, [] as Cell[]])),
    ]),
  );
  let failures = 0;
  // A server that cannot start over a transport once will not start over it
  // for the next case: by "NAME/TRANSPORT".
  const broken = new Set<string>();
  for (let round = 1; round <= repeat; round++) {
    const tag = repeat > 1 ? ` (round ${round})` : "";
    for (const { spec, argv, cases } of runnable) {
      const cellsOf = runs.get(spec.name)!;
      for (const c of cases) {
        const transport = c.transport ?? "tcp";
        if (broken.has(`${spec.name}/${transport}`)) continue;
        let s: Started;
        try {
          s = await startServer(
            argv.get(transport)!,
            serverCpu,
            run.nofile,
            spec.env,
          );
        } catch (error) {
          const msg = error instanceof Error ? error.message : String(error);
          broken.add(`${spec.name}/${transport}`);
          for (const k of cases) {
            if ((k.transport ?? "tcp") !== transport) continue;
            cellsOf.get(k.key)!.push({ error: msg });
          }
          notes.push(
            `${spec.name} failed to start over ${transport}${tag}: ${msg}`,
          );
          console.error(`${spec.name}: failed to start: ${msg}`);
          failures++;
          continue;
        }
        let cell: Cell;
        let relay: Started | undefined;
        try {
          if (c.relay) {
            relay = await startServer(c.relay(s.target), serverCpu, run.nofile);
          }
          cell = await measure(c, s, run, relay?.target);
          const errors = cellErrors(cell);
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
          await relay?.stop();
          await s.stop();
        }
        cellsOf.get(c.key)!.push(cell);
      }
    }
  }
  return { runs, failures };
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
  const settings = parseSettings(parsed.values);
  const { quick, out, seconds, repeat, udpRate, transports } = settings;
  const again = await withWriteAccess(out, {
    script: "bench/bench.ts",
    flags: BENCH_FLAGS,
    granted: "bench-results",
    option: "--out",
    args,
  });
  if (again !== undefined) return again;
  const d = String(seconds);
  const held = quick ? 2000 : 10_000;
  const cases = benchCases({
    duration: d,
    many: quick ? 200 : 1000,
    held,
    udpRate,
  });

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
        formatInt(held)
      }-connection cases need: they are skipped. Raise it (as root: ` +
        `\`ulimit -Hn ${need}\`, or \`nofile\` in /etc/security/limits.conf, ` +
        `or LimitNOFILE= for a service)${
          quick ? "" : ", or run with --quick (2,000 connections)"
        }.`,
    );
  }
  const active = activeCases(cases, transports, skipHeld);
  const hasTls = exists(TLS_CERT) && exists(TLS_KEY) && exists(TLS_CA);
  if (transports.has("tls") && !hasTls) {
    notes.push(`TLS cases skipped: ${TLS_DIR} lacks its certificates`);
  }
  // One directory of our own for the Unix sockets, made by the shell (the
  // bench may write only to --out); every server removes its socket on stop.
  let socketDir: string | undefined;
  if (transports.has("unix")) {
    const made = await shell("mktemp -d");
    if (!made.ok) {
      throw new CliError(
        `Cannot make a directory for the Unix sockets: ${made.stderr}`,
      );
    }
    socketDir = made.stdout.trim();
  }

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

  const hasGcc = await onPath("gcc");
  const hasNode = await onPath("node");
  const servers = benchServers({
    root: ROOT,
    out,
    socket: `${socketDir}/echo.sock`,
    hasGcc,
    hasNode,
    exists,
  });
  let chosen = servers;
  if (settings.only !== undefined) {
    const names = settings.only;
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
    const failed = await build("bench/_epoll_echo.c", `${out}/epoll_echo`);
    if (failed !== undefined) {
      throw new CliError(`Cannot build bench/_epoll_echo.c: ${failed}`);
    }
  }

  // The handshake client: C with OpenSSL where it builds (cheap enough for
  // the server to set the pace), else Node's.
  let handshake: HandshakeClient | string = "not needed";
  if (hasTls && active.some((c) => c.handshake)) {
    handshake = hasNode
      ? { kind: "node" }
      : "neither gcc with OpenSSL's headers nor node found";
    if (hasGcc) {
      const binary = `${out}/tls_handshake`;
      const failed = await build("bench/_tls_handshake.c", binary, [
        "-lssl",
        "-lcrypto",
      ]);
      if (failed === undefined) handshake = { kind: "c", path: binary };
      else {
        notes.push(
          `bench/_tls_handshake.c did not build (${failed}): ${
            hasNode ? "handshakes by the Node client" : "no handshake case"
          }`,
        );
      }
    }
  }

  // The UDP client: C, built here, or no C-client UDP case.
  let udpClient: { path: string } | string = "not needed";
  if (active.some((c) => c.udp?.client === "c")) {
    udpClient = "gcc not found: no C-client UDP case";
    if (hasGcc) {
      const failed = await build("bench/_udp_load.c", `${out}/udp_load`);
      udpClient = failed === undefined
        ? { path: `${out}/udp_load` }
        : `bench/_udp_load.c did not build: ${failed}`;
    }
    if (typeof udpClient === "string") notes.push(udpClient);
  }

  const started = performance.now();
  console.error(
    `bench: ${
      active.length === 0
        ? "the relays"
        : `${chosen.length} servers x ${active.length} cases`
    }, ${d} s each${pin ? ", server on cpu 0, load on cpu 1" : ""}`,
  );
  const runnable: Runnable[] = [];
  for (const server of chosen) {
    const argv = new Map<Transport, string[]>();
    for (const t of TRANSPORTS) {
      if (!active.some((c) => (c.transport ?? "tcp") === t)) continue;
      if (t === "tls" && !hasTls) continue;
      const a = server.command(t);
      if (typeof a === "string") {
        notes.push(`${server.name} skipped over ${t}: ${a}`);
        console.error(`${server.name}: skipped over ${t} (${a})`);
      } else if (a) argv.set(t, a);
    }
    if (argv.size === 0) continue;
    const own = active.filter((c) =>
      argv.has(c.transport ?? "tcp") &&
      !(c.handshake && typeof handshake === "string") &&
      !(c.udp?.client === "c" && typeof udpClient === "string")
    );
    // A case of a transport not chosen runs only as a chosen one's base.
    const wanted = own.filter((c) => transports.has(c.transport ?? "tcp"));
    const needed = new Set(wanted.flatMap(ratioCases));
    const mine = own.filter((c) => wanted.includes(c) || needed.has(c.key));
    runnable.push({ spec: server, argv, cases: mine });
  }
  const run: Runner = { loadCpu, nofile, seconds, handshake, udpClient };
  let outcome;
  try {
    outcome = await runRounds(runnable, repeat, run, serverCpu, notes);
  } finally {
    if (socketDir !== undefined) await shell('rm -rf -- "$1"', socketDir);
  }
  // The relays' cases (tools/proxy.ts beside HAProxy, socat, a plain relay).
  const relayResult = settings.relays && settings.only === undefined && hasGcc
    ? await runProxyCases({
      out,
      seconds,
      repeat,
      build,
      ...(pin ? { cpus: { relay: serverCpu!, load: loadCpu! } } : {}),
    })
    : undefined;
  const relays = relayResult && proxyReport(relayResult);
  const results: Results = new Map();
  for (const { spec, cases } of runnable) {
    const cells = new Map<string, Cell>();
    for (const c of cases) {
      cells.set(c.key, pick(outcome.runs.get(spec.name)!.get(c.key)!));
    }
    results.set(spec.name, cells);
  }

  const ran = runnable.map((r) => r.spec.name);
  const tables = TABLES.map((t) => tableRows(t, ran, active, results))
    .filter((t): t is Table => t !== undefined);
  const handshakeBy = typeof handshake === "string"
    ? "none"
    : handshake.kind === "c"
    ? "bench/_tls_handshake.c (C, OpenSSL)"
    : "bench/_handshake_load.mjs (Node's tls)";
  const when = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const machine =
    `${cores} cores, ${Deno.build.os} ${Deno.build.arch}, Deno ${Deno.version.deno}`;
  const plots = latencyPlots(active, ran, results, machine);
  const md = [
    `Measured ${when} on ${machine}${
      pin ? "; server pinned to cpu 0, load generator to cpu 1" : ""
    }; ${d} s per case${quick ? " (--quick)" : ""}${
      repeat > 1
        ? `; best of ${repeat} runs per case (RSS: median), rounds over all servers in turn`
        : ""
    }.`,
    ...tables.flatMap(({ spec, rows }) => {
      const prose = spec.prose({ handshakeBy, udpRate });
      return [
        ...(prose.before ? ["", ...prose.before] : []),
        "",
        markdownTable(rows),
        ...(prose.after ? ["", ...prose.after] : []),
      ];
    }),
    "",
    ...ran.map((name) =>
      `- ${name}: ${servers.find((s) => s.name === name)!.about}`
    ),
    ...(notes.length ? ["", "Notes:", ...notes.map((n) => `- ${n}`)] : []),
    ...(relays?.markdown ?? []),
    ...(plots.length
      ? [
        "",
        `Latency spectra (HdrHistogram's percentile plot, a line per server): ${
          plots.map((p) => `[${p.title}](${p.file})`).join(", ")
        }.`,
      ]
      : []),
    "",
  ].join("\n");
  await Deno.writeTextFile(`${out}/bench.md`, md);
  await Deno.writeTextFile(
    `${out}/bench.svg`,
    svgChart(
      TABLES,
      ran,
      active,
      results,
      `Echo servers, ${machine}`,
      relayResult ? [proxyPanel(relayResult)] : [],
    ),
  );
  for (const p of plots) await Deno.writeTextFile(`${out}/${p.file}`, p.svg);
  tables.forEach(({ spec, rows }, i) => {
    if (spec.heading) console.log(`${i > 0 ? "\n" : ""}${spec.heading}`);
    console.log(textTable(rows));
  });
  if (relays?.text) console.log(relays.text);
  for (const n of notes) console.log(`note: ${n}`);
  console.log(
    `wrote ${out}/bench.md, ${out}/bench.svg${
      plots.length ? ` and ${plots.length} latency-*.svg` : ""
    } in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  );
  return outcome.failures > 0 ? 1 : 0;
}

/** Whether `path` exists under the project root. */
function exists(path: string): boolean {
  try {
    Deno.statSync(`${ROOT}${path}`);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) runMain(main);
