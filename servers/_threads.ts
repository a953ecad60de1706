/**
 * An echo server run T times in Web Workers that share one port through
 * SO_REUSEPORT (Linux), behind one {@linkcode EchoServer} handle whose
 * counters are the threads' sums. A script that offers `--threads` is its
 * own Worker entry: it calls {@linkcode runThread} when
 * {@linkcode isServerThread} says it is one of its threads, and
 * {@linkcode serveThreads} from its `serve...` function otherwise.
 *
 * @module
 */

import {
  CliError,
  type OptionSpec,
  parseInteger,
  UsageError,
} from "../_cli.ts";
import type { Addr } from "../_net.ts";
import {
  type EchoServer,
  type EchoServerOptions,
  type EchoStats,
  sumStats,
} from "./_echo.ts";
import { StatsWatch } from "../_watch.ts";

/** The `--threads` option of the servers that run in Web Workers. */
export const THREADS_OPTION: OptionSpec = {
  type: "string",
  short: "t",
  default: "1",
  arg: "T",
  description: "Copies of the server in Web Workers on one port (Linux).",
};

/**
 * `--threads` from the command line: 1 to 64, and only over TCP.
 *
 * @throws {UsageError} If it is out of range or given with `--unix`.
 */
export function parseThreads(value: unknown, unix: string | undefined): number {
  const threads = parseInteger(value, "--threads", 1, 64);
  if (threads > 1 && unix !== undefined) {
    throw new UsageError(
      "--threads and --unix do not combine: threads share a TCP port",
    );
  }
  return threads;
}

/** How often a thread sends its counters to the main thread, in ms. */
const STATS_INTERVAL = 200;

/** Where a server's threads come from. */
export interface ThreadEntry {
  /** The Worker's module: the script's `import.meta.url`. */
  url: string;
  /** The Workers' name, by which the module knows it runs as one. */
  name: string;
  /**
   * Every module the Worker loads from disk (the entry and its imports,
   * relative to `url`): each needs read access, checked before starting.
   */
  modules: readonly string[];
}

/**
 * The modules every echo server's Worker loads besides its own (relative to
 * `servers/`, as `ThreadEntry.modules` are): what `_echo.ts`, `_threads.ts`
 * and the engines import. A server's `THREAD_ENTRY` lists its own modules,
 * then these.
 */
export const SHARED_THREAD_MODULES: readonly string[] = [
  "./_buffer_pool.ts",
  "./_threads.ts",
  "./_echo.ts",
  "../_cli.ts",
  "../_net.ts",
  "../_net_options.ts",
  "../_accept.ts",
  "../_access.ts",
  "../_tls_errors.ts",
  "../_runtime.ts",
  "../_watch.ts",
];

/** What a server thread is started with: the server's options, less these. */
type ThreadOptions = Omit<EchoServerOptions, "log" | "signal">;

/** Messages between the main thread and a server thread. */
type ToThread =
  | { type: "start"; options: ThreadOptions; index: number }
  | { type: "close" };
type FromThread =
  | { type: "listening"; addr: Deno.NetAddr }
  | { type: "error"; message: string }
  | { type: "log"; line: string }
  | { type: "stats"; stats: EchoStats }
  | { type: "finished"; stats: EchoStats };

/** One server thread as the main thread sees it. */
interface ThreadHandle {
  /** The Web Worker. */
  worker: Worker;
  /** Its latest counters. */
  stats: EchoStats;
  /** Resolves with its final counters. */
  finished: Promise<EchoStats>;
}

/**
 * Whether `--unstable-net` is on. Without it `Deno.listen({ reusePort })`
 * ends the process (exit 70) instead of throwing, so ask first: the flag
 * also exposes `Deno.listenDatagram`.
 */
function hasUnstableNet(): boolean {
  return typeof (Deno as { listenDatagram?: unknown }).listenDatagram ===
    "function";
}

/**
 * A Web Worker loads its module and the module's imports from disk, which
 * needs read access to them; without it the Worker dies with a stack
 * trace, so ask first and say what to add.
 *
 * @throws {CliError} If a module file cannot be read.
 */
function checkWorkerReadable(entry: ThreadEntry, threads: number): void {
  // A `deno compile` binary loads its Workers from the embedded modules,
  // under a `deno-compile-` path, with no read access needed.
  if (entry.url.includes("/deno-compile-")) return;
  for (const module of entry.modules) {
    const url = new URL(module, entry.url);
    if (url.protocol !== "file:") continue;
    const path = decodeURIComponent(url.pathname);
    const status = Deno.permissions.querySync({ name: "read", path });
    if (status.state !== "granted") {
      const root = decodeURIComponent(new URL("../", entry.url).pathname);
      throw new CliError(
        `--threads ${threads} runs this module in Web Workers, which need to read it: add --allow-read=${root}`,
      );
    }
  }
}

/** Whether this code runs in one of `entry`'s server threads. */
export function isServerThread(entry: ThreadEntry): boolean {
  return typeof (globalThis as { WorkerGlobalScope?: unknown })
        .WorkerGlobalScope !== "undefined" &&
    (globalThis as { name?: string }).name === entry.name;
}

/**
 * The checks before starting threads: Linux (elsewhere one thread, logged),
 * TCP, `--unstable-net`, read access to the Worker's modules.
 *
 * @returns The threads to run.
 * @throws {RangeError} If `threads` is not a whole number of at least 1,
 * or above 1 with a Unix socket.
 * @throws {CliError} If `--unstable-net` or read access is missing.
 */
export function checkThreads(
  entry: ThreadEntry,
  options: EchoServerOptions & { threads?: number; reusePort?: boolean },
  log: (line: string) => void,
): number {
  let threads = options.threads ?? 1;
  if (!Number.isSafeInteger(threads) || threads < 1) {
    throw new RangeError(
      `Cannot use threads "${threads}": expected a whole number of at least 1`,
    );
  }
  if (threads > 1 && options.unix !== undefined) {
    throw new RangeError(
      `Cannot use threads "${threads}" with unix: threads share a TCP port (SO_REUSEPORT)`,
    );
  }
  if (threads > 1 && Deno.build.os !== "linux") {
    log(
      `--threads ${threads}: SO_REUSEPORT port sharing needs Linux; running 1 thread`,
    );
    threads = 1;
  }
  if ((threads > 1 || options.reusePort) && !hasUnstableNet()) {
    throw new CliError(
      "Cannot share the port between threads: Deno.listen's reusePort needs --unstable-net (this package's deno.json sets it); add the flag or use one thread",
    );
  }
  if (threads > 1) checkWorkerReadable(entry, threads);
  return threads;
}

/**
 * The main thread of `--threads T`: starts `threads` Workers of `entry`,
 * each serving `options` plus `extra` (the engine's own options) on one
 * port, gathers their stats and stops them.
 */
export async function serveThreads(
  entry: ThreadEntry,
  options: EchoServerOptions,
  extra: Record<string, unknown>,
  threads: number,
  log: (line: string) => void,
): Promise<EchoServer<Addr>> {
  const shared = new Int32Array(new SharedArrayBuffer(4));
  const handles: ThreadHandle[] = [];
  const watch = new StatsWatch(() => sumStats(handles.map((h) => h.stats)));
  const base = {
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    maxConnections: options.maxConnections,
    idleTimeout: options.idleTimeout,
    grace: options.grace,
    verbose: options.verbose,
    // Every thread serves the same endpoint: TLS with the same certificate
    // (PEM text clones into a Worker), the same access lists.
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.allow !== undefined ? { allow: options.allow } : {}),
    ...(options.deny !== undefined ? { deny: options.deny } : {}),
    ...extra,
    reusePort: true,
    sharedActive: shared,
  };
  let addr: Deno.NetAddr | undefined;
  try {
    // One after another: the first binds (port 0 picks the port), the rest
    // join its port through SO_REUSEPORT.
    for (let index = 0; index < threads; index++) {
      const port = addr?.port ?? base.port;
      const { handle, listening } = startThread(
        entry,
        { ...base, port },
        index,
        log,
        () => watch.changed(),
      );
      handles.push(handle);
      addr = await listening;
    }
  } catch (error) {
    for (const h of handles) h.worker.terminate();
    throw error;
  }
  const bound = addr!;

  let stopping: Promise<EchoStats> | undefined;
  function stop(): Promise<EchoStats> {
    stopping ??= (async () => {
      for (const h of handles) h.worker.postMessage({ type: "close" });
      const finals = await Promise.all(handles.map((h) => h.finished));
      watch.stop();
      return sumStats(finals);
    })();
    return stopping;
  }
  let resolveFinished!: (stats: EchoStats) => void;
  const finished = new Promise<EchoStats>((r) => resolveFinished = r);
  const onAbort = () => stop().then(resolveFinished);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  finished.finally(() => options.signal?.removeEventListener("abort", onAbort));

  function close(): Promise<EchoStats> {
    return stop().then((stats) => {
      resolveFinished(stats);
      return stats;
    });
  }
  return {
    addr: bound,
    stats: () => sumStats(handles.map((h) => h.stats)),
    until: (test, signal) => watch.until(test, signal),
    finished,
    close,
    [Symbol.asyncDispose]: () => close().then(() => {}),
  };
}

/** Starts server thread `index` and returns its handle and bound address. */
function startThread(
  entry: ThreadEntry,
  options: ThreadOptions,
  index: number,
  log: (line: string) => void,
  onStats: () => void,
): { handle: ThreadHandle; listening: Promise<Deno.NetAddr> } {
  const worker = new Worker(entry.url, { type: "module", name: entry.name });
  const empty: EchoStats = sumStats([]);
  delete empty.perThread;
  let onListening!: (addr: Deno.NetAddr) => void;
  let onFailed!: (error: Error) => void;
  const listening = new Promise<Deno.NetAddr>((resolve, reject) => {
    onListening = resolve;
    onFailed = reject;
  });
  let onFinished!: (stats: EchoStats) => void;
  const finished = new Promise<EchoStats>((r) => onFinished = r);
  const handle: ThreadHandle = { worker, stats: empty, finished };
  worker.onmessage = (event: MessageEvent<FromThread>) => {
    const message = event.data;
    switch (message.type) {
      case "listening":
        started = true;
        onListening(message.addr);
        break;
      case "error":
        onFailed(new CliError(message.message));
        worker.terminate();
        onFinished(handle.stats);
        break;
      case "log":
        log(`[thread ${index}] ${message.line}`);
        break;
      case "stats":
        handle.stats = message.stats;
        onStats();
        break;
      case "finished":
        handle.stats = message.stats;
        worker.terminate();
        onFinished(message.stats);
        break;
    }
  };
  let started = false;
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault();
    // Before "listening" the caller reports the failure; after, log it.
    if (started) log(`[thread ${index}] failed: ${event.message}`);
    onFailed(new CliError(`Thread ${index} failed: ${event.message}`));
    worker.terminate();
    onFinished(handle.stats);
  };
  worker.postMessage({ type: "start", options, index } satisfies ToThread);
  return { handle, listening };
}

/**
 * The body of a server thread (a Web Worker running the entry module):
 * waits for its options, serves them with `serve` (one thread), reports
 * its address, its counters a few times a second and its final ones.
 */
export function runThread(
  serve: (
    options: EchoServerOptions & { threads: 1 },
  ) => Promise<EchoServer<Addr>>,
): void {
  const scope = self as unknown as {
    postMessage(message: FromThread): void;
    onmessage: ((event: MessageEvent<ToThread>) => void) | null;
    close(): void;
  };
  let server: EchoServer<Addr> | undefined;
  scope.onmessage = async (event) => {
    const message = event.data;
    if (message.type === "close") {
      server?.close();
      return;
    }
    try {
      server = await serve({
        ...message.options,
        threads: 1,
        log: (line) => scope.postMessage({ type: "log", line }),
      });
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      scope.postMessage({ type: "error", message: text });
      return;
    }
    scope.postMessage({
      type: "listening",
      addr: server.addr as Deno.NetAddr,
    });
    // Counters go to the main thread a few times a second, only on change.
    let last = "";
    const timer = setInterval(() => {
      const stats = server!.stats();
      const text = JSON.stringify(stats);
      if (text !== last) {
        last = text;
        scope.postMessage({ type: "stats", stats });
      }
    }, STATS_INTERVAL);
    const stats = await server.finished;
    clearInterval(timer);
    scope.postMessage({ type: "finished", stats });
  };
}
