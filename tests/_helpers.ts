/**
 * Test helpers shared by the test files: run a script of the project as a
 * subprocess (with the permissions its task or README gives it), wait for
 * its `listening on` line, read its output line by line.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import { writeAll } from "../_net.ts";
import { Child, type Output, runCommand } from "../_process.ts";
import { xorshift32 } from "../_random.ts";

/** The project root, as a path. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** Permissions each script is run with in tests: what its README line gives. */
export const SCRIPT_PERMISSIONS: Record<string, string[]> = {
  // The servers read the test certificates (--cert, --key) from here.
  "servers/sequential.ts": [
    "--allow-net=127.0.0.1,[::1]",
    "--allow-read=tests/fixtures/tls",
  ],
  "servers/select_echo.ts": [
    "--allow-net=127.0.0.1,[::1]",
    "--allow-read=tests/fixtures/tls",
  ],
  "servers/completion_echo.ts": [
    "--allow-net=127.0.0.1,[::1]",
    "--allow-read=tests/fixtures/tls",
  ],
  "servers/udp_echo.ts": ["--allow-net=127.0.0.1,[::1]"],
  // The clients read the test certificates (--ca, --cert, --key) from here.
  "clients/client.ts": ["--allow-net", "--allow-read=tests/fixtures/tls"],
  "tools/hostinfo.ts": [
    "--allow-net",
    "--allow-sys=hostname,networkInterfaces",
  ],
  "tools/netstat.ts": ["--allow-run=netstat", "--allow-net=127.0.0.1,[::1]"],
  "tools/load.ts": [
    "--allow-net=127.0.0.1,[::1],localhost",
    "--allow-read=tests/fixtures/tls",
  ],
  // The proxy reads the test certificates (--cert, --key, --upstream-ca).
  "tools/proxy.ts": [
    "--allow-net=127.0.0.1,[::1]",
    "--allow-read=tests/fixtures/tls",
  ],
  "tools/compile.ts": [
    "--allow-read",
    "--allow-env",
    "--allow-run",
    "--allow-write",
  ],
};

/** What a finished subprocess printed: the one of `_process.ts`. */
export type { Output };

function denoArgs(script: string, args: string[], perms?: string[]) {
  return [
    "run",
    "--quiet",
    ...(perms ?? SCRIPT_PERMISSIONS[script] ?? []),
    script,
    ...args,
  ];
}

/** Runs `script` with `args` to completion. */
export function runScript(
  script: string,
  args: string[],
  options: { perms?: string[]; env?: Record<string, string> } = {},
): Promise<Output> {
  return runDeno(denoArgs(script, args, options.perms), options.env);
}

/** Runs `deno ARGS...` (a task, say) in the project root to completion. */
export async function runDeno(
  args: string[],
  env: Record<string, string> = {},
): Promise<Output> {
  return await runCommand([Deno.execPath(), ...args], { cwd: ROOT, env });
}

/** How {@linkcode Running} starts its script. */
export interface RunningOptions {
  /** Permission flags, instead of the script's {@linkcode SCRIPT_PERMISSIONS}. */
  perms?: string[];
  /** Extra environment variables. */
  env?: Readonly<Record<string, string>>;
  /** An open-files limit to run under (`ulimit -n`, through `sh`). */
  nofile?: number;
}

/**
 * A script running in the background, read line by line: the project's one
 * process starter (`_process.ts`, which the bench uses too), given a
 * script's permissions.
 */
export class Running extends Child {
  /**
   * Starts `script` with `args`; `options` as {@linkcode RunningOptions}.
   */
  constructor(script: string, args: string[], options: RunningOptions = {}) {
    const { perms, env = {}, nofile } = options;
    super([Deno.execPath(), ...denoArgs(script, args, perms)], {
      cwd: ROOT,
      env,
      ...(nofile === undefined ? {} : { nofile, nofileStrict: true }),
    });
  }

  /** Waits for `listening on HOST:PORT` (the first line) and returns the port. */
  async port(): Promise<number> {
    const line = await this.nextLine();
    const match = line?.match(/^listening on (?:\[[^\]]+\]|[^:]+):(\d+)$/);
    if (!match) {
      const { stderr } = await this.wait();
      throw new Error(`Expected "listening on", got ${line}; ${stderr}`);
    }
    return Number(match[1]);
  }
}

/** Writes all of `bytes` to `conn` (a write may be partial): the one in _net.ts. */
export { writeAll };

/** Reads from `conn` until the peer ends its data; returns the bytes. */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** Reads from `conn` until a `\n`; returns the text before it. */
export async function readLine(conn: Deno.Conn): Promise<string | null> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  while (true) {
    const n = await conn.read(one);
    if (n === null) {
      return bytes.length
        ? new TextDecoder().decode(new Uint8Array(bytes))
        : null;
    }
    if (one[0] === 10) return new TextDecoder().decode(new Uint8Array(bytes));
    bytes.push(one[0]!);
  }
}

/**
 * Waits for `server.until(test)` (an echo server's or the proxy's handle:
 * see `EchoServer.until`, `ProxyServer.until`), failing after `ms` with
 * `what`.
 */
export async function waitForStats<S>(
  server: {
    until(test: (stats: S) => boolean, signal?: AbortSignal): Promise<S>;
  },
  test: (stats: S) => boolean,
  what: string,
  ms = 20_000,
): Promise<S> {
  const timer = new AbortController();
  const id = setTimeout(
    () => timer.abort(new Error(`Timed out waiting for ${what}`)),
    ms,
  );
  try {
    return await server.until(test, timer.signal);
  } finally {
    clearTimeout(id);
  }
}

/**
 * Polls `condition` until it holds, failing after `ms` with `what`: for
 * state that reports no event (prefer {@linkcode waitForStats}).
 */
export async function waitUntil(
  condition: () => boolean,
  what: string,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Deterministic pseudo-random numbers (xorshift32), so a failure replays:
 * the project's one generator, `_random.ts`.
 */
export const pseudoRandom: (seed: number) => () => number = xorshift32;

/** `length` bytes from `next` (see {@linkcode pseudoRandom}). */
export function randomBytes(length: number, next: () => number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = next() & 0xff;
  return bytes;
}

/** Index of the first difference of `a` and `b`, or -1 if they are equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** An echo server's final counters, as {@linkcode drainStreaming} reads its stats line. */
export interface PrintedStats {
  /** Connections served. */
  accepted: number;
  /** Bytes read before the stop. */
  bytesRead: number;
  /** Bytes written back. */
  bytesEchoed: number;
  /** Connections that ended in an error. */
  errors: number;
  /** Connections cut when `--grace` ran out. */
  graceClosed: number;
  /** Bytes those had read and not written back. */
  bytesUnechoed: number;
}

/** What {@linkcode drainStreaming} saw, for {@linkcode drainFailures} to judge. */
export interface DrainReport {
  /** The server's exit code and output. */
  out: Output;
  /** Its stats line, parsed; undefined if it printed none. */
  stats: PrintedStats | undefined;
  /** Per client, the bytes echoed before the server's EOF. */
  echoed: number[];
  /** Per client, the bytes it sent before it saw that EOF. */
  sent: number[];
  /** What went wrong on the clients' side (corrupt echo, a failed write). */
  problems: string[];
}

/**
 * Runs echo server `script` with `args`, opens `connections` connections
 * that each stream their own endless pattern while reading the echo, sends
 * SIGTERM once the clients together have had `warmup` bytes back (by
 * default 64 KiB a connection: waiting for every client would wait for the
 * few the server serves late, docs/runtime_settings.md), and lets each
 * client go on sending until it sees the server's EOF, then close. Every
 * echoed byte is checked against the pattern as it arrives, so the echo
 * before EOF is a prefix of what that client sent or a problem is logged. Before the stop
 * a client keeps at most `window` bytes unechoed, to bound the load; after
 * it, it sends without waiting, as a client that does not know of the stop
 * would. Requires `--allow-run` and `--allow-net=127.0.0.1`.
 */
export async function drainStreaming(
  script: string,
  args: string[],
  options: { connections: number; warmup?: number; window?: number },
): Promise<DrainReport> {
  const {
    connections,
    warmup = connections * 64 * 1024,
    window = 128 * 1024,
  } = options;
  // One pattern for every client, each starting elsewhere in it; its
  // length is prime, so losing a power-of-two read (16 KiB) cannot line it
  // up. Stored twice over, so any chunk of it is one view, compared by a
  // native memcmp: a byte loop would cost the clients more CPU than the
  // server's echo, on a machine they share.
  const length = 1_048_573;
  const table = new Uint8Array(2 * length);
  table.set(randomBytes(length, pseudoRandom(0xd7a1)));
  table.copyWithin(length, 0, length);
  await using proc = new Running(script, ["--port", "0", ...args]);
  const port = await proc.port();
  const opened = await Promise.allSettled(
    Array.from(
      { length: connections },
      () => Deno.connect({ hostname: "127.0.0.1", port }),
    ),
  );
  const conns: Deno.TcpConn[] = [];
  for (const r of opened) if (r.status === "fulfilled") conns.push(r.value);
  const refused = opened.find((r) => r.status === "rejected");
  if (refused !== undefined) {
    for (const conn of conns) conn.close();
    throw (refused as PromiseRejectedResult).reason;
  }
  const problems: string[] = [];
  const echoed = new Array<number>(connections).fill(0);
  const sent = new Array<number>(connections).fill(0);
  let total = 0; // bytes echoed to all clients
  let ended = 0; // clients whose reading is over
  let warmed!: () => void;
  const warm = new Promise<void>((resolve) => warmed = resolve);
  const nudges: (() => void)[] = []; // wake each client's waiting writer
  let stopped = false;
  const clients = conns.map(async (conn, c) => {
    const start = (c * 7919) % length;
    let eof = false;
    let wake: () => void = () => {};
    nudges.push(() => wake());
    const reading = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      let at = start; // table index of the next byte due back
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        const got = buffer.subarray(0, n);
        const due = table.subarray(at, at + n);
        if (Buffer.compare(got, due) !== 0) {
          const k = firstDifference(got, due);
          problems.push(`client ${c}: echoed byte ${echoed[c]! + k} is wrong`);
          return;
        }
        at += n;
        if (at >= length) at -= length;
        echoed[c]! += n;
        total += n;
        if (total >= warmup) warmed();
        wake();
      }
    })().catch((error) => {
      problems.push(`client ${c}: read failed: ${error}`);
    }).finally(() => {
      eof = true;
      // A server that ends early is judged by the counts.
      if (++ended === connections) warmed();
      wake();
    });
    const writing = (async () => {
      let at = start;
      while (!eof) {
        if (!stopped && sent[c]! - echoed[c]! >= window) {
          await new Promise<void>((resolve) => wake = resolve);
          continue;
        }
        const n = await conn.write(table.subarray(at, at + 64 * 1024));
        sent[c]! += n;
        at += n;
        if (at >= length) at -= length;
      }
    })().catch((error) => {
      if (!eof) problems.push(`client ${c}: write failed: ${error}`);
    });
    await reading;
    // Closing also ends a write still waiting on a full socket.
    conn.close();
    await writing;
  });
  await warm;
  proc.child.kill("SIGTERM");
  stopped = true;
  for (const nudge of nudges) nudge();
  await Promise.all(clients);
  const out = await proc.wait();
  const match = out.stdout.match(
    /^stats: (\d+) connections served, .* (\d+) bytes read, (\d+) bytes echoed, (\d+) errors, .* (\d+) cut by --grace \((-?\d+) bytes unechoed\)/m,
  );
  const stats = match && {
    accepted: Number(match[1]),
    bytesRead: Number(match[2]),
    bytesEchoed: Number(match[3]),
    errors: Number(match[4]),
    graceClosed: Number(match[5]),
    bytesUnechoed: Number(match[6]),
  };
  return { out, stats: stats ?? undefined, echoed, sent, problems };
}

/**
 * What a {@linkcode drainStreaming} run of `connections` clients shows
 * against a drain that loses nothing: exit 0, every echo intact, no
 * connection cut by `--grace`, the server's echo count equal to what the
 * clients got, and every byte the server read before the stop written
 * back. Empty when all holds.
 */
export function drainFailures(
  report: DrainReport,
  connections: number,
): string[] {
  const { out, stats, echoed, sent } = report;
  const failures = [...report.problems];
  if (out.code !== 0) failures.push(`exit ${out.code}: ${out.stderr}`);
  if (stats === undefined) return [...failures, `no stats: ${out.stdout}`];
  const got = echoed.reduce((a, b) => a + b, 0);
  const over = echoed.filter((n, c) => n > sent[c]!).length;
  if (over > 0) failures.push(`${over} clients got more back than they sent`);
  if (stats.accepted !== connections) {
    failures.push(`${stats.accepted} connections served, not ${connections}`);
  }
  if (stats.errors !== 0) {
    failures.push(`${stats.errors} errors: ${out.stderr}`);
  }
  if (stats.graceClosed !== 0 || stats.bytesUnechoed !== 0) {
    failures.push(
      `${stats.graceClosed} connections cut by --grace, ${stats.bytesUnechoed} bytes unechoed`,
    );
  }
  if (stats.bytesEchoed !== got) {
    failures.push(
      `the server echoed ${stats.bytesEchoed} bytes, the clients got ${got}`,
    );
  }
  if (stats.bytesRead > stats.bytesEchoed) {
    failures.push(
      `read ${stats.bytesRead} bytes before the stop, echoed ${stats.bytesEchoed}: ${
        stats.bytesRead - stats.bytesEchoed
      } lost (${(stats.bytesRead - stats.bytesEchoed) / 16384} x 16 KiB)`,
    );
  }
  return failures;
}

/**
 * Connects to an echo server on 127.0.0.1:`port`, sends `data` in chunks of
 * random size (1 to `maxChunk`) while reading, shuts down writing, and
 * returns everything read until the server closes.
 */
export async function echoInChunks(
  port: number,
  data: Uint8Array,
  next: () => number,
  maxChunk: number,
): Promise<Uint8Array> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reading = readAll(conn);
  let at = 0;
  while (at < data.length) {
    const size = 1 + (next() % maxChunk);
    await writeAll(conn, data.subarray(at, at + size));
    at += size;
  }
  await conn.closeWrite();
  return await reading;
}

/**
 * Opens `count` connections to 127.0.0.1:`port` one after another and resets
 * each as soon as it is established (SO_LINGER 0 through `node:net`'s
 * `resetAndDestroy`), before a server has had time to accept it: the
 * kernel's accept then hands the server a connection that is already gone.
 */
export async function resetBurst(port: number, count: number): Promise<void> {
  const net = await import("node:net");
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.resetAndDestroy();
      });
      socket.once("close", () => resolve());
      socket.once("error", (error: NodeJS.ErrnoException) => {
        if (error.code === "ECONNRESET") resolve();
        else reject(error);
      });
    });
  }
}

/**
 * Where tests put Unix sockets: one fixed directory, because Deno 2.9 grants
 * a Unix socket only by its exact absolute path (`--allow-net=unix:PATH`),
 * so the test task's flags can name them.
 */
export const SOCKET_DIR = "/tmp/socket-notes-test";

/**
 * The path of test socket `name` in {@linkcode SOCKET_DIR} (made if
 * missing; a file left there is removed), and the narrowest flags a script
 * needs to listen on it or connect to it, as the README gives them.
 */
export function unixSocket(name: string): { path: string; perms: string[] } {
  Deno.mkdirSync(SOCKET_DIR, { recursive: true });
  const path = `${SOCKET_DIR}/${name}.sock`;
  try {
    Deno.removeSync(path);
  } catch {
    // Nothing left from an earlier run.
  }
  return {
    path,
    perms: [
      `--allow-net=127.0.0.1,unix:${path}`,
      `--allow-read=${path},tests/fixtures/tls`,
      `--allow-write=${path}`,
    ],
  };
}

/**
 * Leaves a stale socket file at `path`: a process binds it and exits
 * without closing its listener (Deno removes the file on close), as a
 * killed server would.
 */
export async function leaveStaleSocket(path: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `Deno.listen({ transport: "unix", path: ${
        JSON.stringify(path)
      } }); Deno.exit(0);`,
    ],
    stdout: "null",
  }).output();
  if (!out.success || !Deno.lstatSync(path).isSocket) {
    throw new Error(`Could not leave a stale socket at ${path}`);
  }
}
