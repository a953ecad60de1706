#!/usr/bin/env -S deno run --unstable-net --v8-flags=--max-semi-space-size=4 --allow-net
/**
 * The notes' "Select Example Server" (select-server.cpp): one thread, a list
 * of connections each with a buffer, and one loop that asks select()
 * which of them are ready, reads into a buffer only while it has room and
 * writes only while it holds data.
 *
 * Deno has no select(): a socket tells that it is ready only by finishing a
 * `conn.read` or `conn.write`. The {@linkcode Selector} turns those
 * completions back into readiness. Setting a connection in the read set
 * arms one `conn.read` into the free part of its buffer; setting it in the
 * write set arms one `conn.write` of the bytes it holds. Each armed
 * operation reports once: its `.then` puts the connection on a ready list
 * and wakes the one `select()` that waits, which resolves with the whole
 * list as a batch. A connection is "readable" when its read has landed
 * (recv is already done) and "writable" when its write has gone out
 * (perhaps in part).
 *
 * Why not `Promise.race` over every pending read, as the obvious port of
 * select() would: each race adds a reaction to every promise it is given
 * and a pending promise keeps them all (nodejs/node#17469). Measured here,
 * 2,000 races over 10,000 idle reads grew RSS by 1.9 GiB and took 4.4 ms
 * each. Here each connection holds at most one armed read and one armed
 * write, each with one reaction for its whole life, so the cost of an
 * event does not depend on how many idle connections are registered.
 *
 * How the notes map onto this module:
 *
 * | notes (select-server.cpp)                                  | here                                          |
 * | ---------------------------------------------------------- | --------------------------------------------- |
 * | `struct Connection { sd, acBuffer[kBufferSize], nCharsInBuffer }` | `Connection`: `conn`, `buffer` (`--buffer`), `held` |
 * | `gConnections`                                             | the engine's map of connections               |
 * | `SetupFDSets`: `FD_SET(sd, &ReadFDs)` while `nCharsInBuffer < kBufferSize` | `key.setRead(free space)` in `#setupFDSets` |
 * | `SetupFDSets`: `FD_SET(sd, &WriteFDs)` while `nCharsInBuffer > 0` | `key.setWrite(held bytes)` in `#setupFDSets` |
 * | `FD_SET(sd, &ExceptFDs)`                                   | `readError` / `writeError` of a report        |
 * | `select(0, &ReadFDs, &WriteFDs, &ExceptFDs, 0)`            | `await selector.select()`                     |
 * | `FD_ISSET(sd, &ReadFDs)`: `ReadData` (recv)                | `key.readable`: `#readData` counts what landed |
 * | `FD_ISSET(sd, &WriteFDs)`: `WriteData` (send, memmove)     | `key.writable`: `#writeData`                  |
 * | listener in `ReadFDs`: `accept`, `gConnections.push_back`  | the shared core's accept loop (one armed accept), then `open` |
 * | `ShutdownConnection(sd)`, `gConnections.erase(it)`         | `#shutdownConnection`                         |
 * | "WARNING: More than 63 client connections"                 | `--max-connections`, warned once per burst    |
 *
 * Where this departs from the notes on purpose: the notes rebuild the fd
 * sets over every connection on each pass, the O(n) cost that makes
 * select() slow; here interest is set once per operation and stays until it
 * reports, so a pass touches only the connections in its batch. The buffer
 * is a ring: the notes `memmove` the unsent rest to the front, which would
 * move bytes under a read in flight. When a client shuts down its sending
 * side the notes close at once; here everything already read is written
 * back first (half-close). The notes' buffer is fixed at 1 KiB, which
 * streams at a third of a plain read/write loop's speed: here a buffer
 * starts at `--buffer` (1 KiB) and grows while its reads fill it, up to
 * `--max-buffer` (64 KiB), after Netty's AdaptiveRecvByteBufAllocator, and
 * a connection waits for input in the small one (docs/select_buffers.md).
 *
 * The Selector is in `_select_selector.ts`, the engine and its connections
 * in `_select_engine.ts`, the buffers' size policy in `_select_buffers.ts`,
 * the threads in `_threads.ts`; this module is the entry point, and the
 * Worker entry of its own threads.
 *
 * @example
 * ```ts
 * import { serveSelectEcho } from "./select_echo.ts";
 * await using server = await serveSelectEcho({ port: 0, log: () => {} });
 * using conn = await Deno.connect({ port: server.addr.port });
 * await conn.write(new TextEncoder().encode("hi"));
 * const buf = new Uint8Array(2);
 * await conn.read(buf);
 * console.log(new TextDecoder().decode(buf)); // "hi"
 * ```
 *
 * @module
 */

import { NOTES_PORT, parseInteger, runMain } from "../_cli.ts";
import { type Addr, listen } from "../_net.ts";
import { listenEndpoint } from "../_net_options.ts";
import {
  ECHO_OPTIONS,
  type EchoServer,
  echoServerMain,
  type EchoServerOptions,
  manyConnectionsHelp,
  parseEchoOptions,
  runEchoServer,
} from "./_echo.ts";
import { DEFAULT_MAX_BUFFER, DEFAULT_MIN_BUFFER } from "./_select_buffers.ts";
import { SelectEngine } from "./_select_engine.ts";
import {
  checkThreads,
  isServerThread,
  parseThreads,
  runThread,
  serveThreads,
  SHARED_THREAD_MODULES,
  type ThreadEntry,
  THREADS_OPTION,
} from "./_threads.ts";

export { AdaptiveSize, sizeTable } from "./_select_buffers.ts";
export { type SelectionKey, Selector } from "./_select_selector.ts";

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/** Default smallest per-connection buffer: the notes' `kBufferSize`. */
export const DEFAULT_BUFFER_SIZE: number = DEFAULT_MIN_BUFFER;
/** Default largest per-connection buffer (see {@linkcode DEFAULT_MAX_BUFFER}). */
export const DEFAULT_MAX_BUFFER_SIZE: number = DEFAULT_MAX_BUFFER;
/** Largest `--buffer` accepted. */
const MAX_BUFFER_SIZE = 64 * 1024 * 1024;

/** Options of {@linkcode serveSelectEcho}. */
export interface SelectEchoOptions extends EchoServerOptions {
  /**
   * The smallest buffer of a connection, the notes' `kBufferSize`: each
   * connection starts with it and waits for input in it. Default 1024.
   */
  bufferSize?: number;
  /**
   * The largest buffer a connection's buffer grows to while its reads fill
   * it: the most bytes the server holds for one client (one that sends and
   * never reads). Default 65536, or `bufferSize` if that is larger; equal
   * to `bufferSize`, the buffer is fixed, as in the notes.
   */
  maxBufferSize?: number;
  /**
   * Copies of the server, each in a Web Worker with its own listener on
   * the same port (SO_REUSEPORT; Linux only, elsewhere 1). Default 1.
   */
  threads?: number;
  /** Bind with SO_REUSEPORT even with one thread. Default false. */
  reusePort?: boolean;
}

/**
 * This module as its own Web Worker entry for `threads`, with every module
 * a Worker loads from disk (the select-echo task's `--allow-read` lists the
 * same).
 */
export const THREAD_ENTRY: ThreadEntry = {
  url: import.meta.url,
  name: "socket-notes select_echo thread",
  modules: [
    "./select_echo.ts",
    "./_select_selector.ts",
    "./_select_engine.ts",
    "./_select_buffers.ts",
    ...SHARED_THREAD_MODULES,
  ],
};

/**
 * Starts the notes' select() echo server: one loop over a
 * {@linkcode Selector} echoes every connection through its own buffer,
 * reading only while the buffer has room and writing only while it holds
 * data. Live stats include `bytesHeld` (read, not yet written back),
 * `peakHeld` (the most one connection held at once), `bufferBytes` (the
 * connections' buffers now) and `peakBuffer` (the largest one so far).
 * With `threads` above 1 (Linux) the server runs that many times in Web
 * Workers on one port and the handle sums their counters, each thread's
 * kept in `stats().perThread`.
 *
 * Requires `--allow-net` (a Unix socket: `--allow-net=unix:PATH
 * --allow-read=PATH --allow-write=PATH`); `threads` above 1 needs
 * `--unstable-net` (set in this package's deno.json) and `--allow-read` for
 * the Worker's modules.
 *
 * @param options Where to listen (TCP, TLS, a Unix socket), limits, buffer
 * sizes, threads.
 * @returns The running server; `close()` drains it and gives final stats.
 * @throws {RangeError} If `bufferSize` is not a whole number from 1 to 64
 * MiB, or `maxBufferSize` one from `bufferSize` to 64 MiB, or `threads`
 * not a whole number of at least 1 (or above 1 with `unix`).
 * @throws {CliError} If the address cannot be bound, or threads need a
 * permission or flag that is missing.
 *
 * @example
 * ```ts
 * import { serveSelectEcho } from "./select_echo.ts";
 * const server = await serveSelectEcho({ port: 0, bufferSize: 4096, log: () => {} });
 * console.log(server.addr.port > 0); // true
 * console.log((await server.close()).accepted); // 0
 * ```
 */
export function serveSelectEcho(
  options: SelectEchoOptions & { unix: string },
): Promise<EchoServer<Deno.UnixAddr>>;
/** Over TCP or TLS: the server's address is a `Deno.NetAddr`. */
export function serveSelectEcho(
  options?: SelectEchoOptions,
): Promise<EchoServer<Deno.NetAddr>>;
export async function serveSelectEcho(
  options: SelectEchoOptions = {},
): Promise<EchoServer<Addr>> {
  const size = options.bufferSize ?? DEFAULT_BUFFER_SIZE;
  checkSize("bufferSize", size, 1);
  const max = options.maxBufferSize ??
    Math.max(size, DEFAULT_MAX_BUFFER_SIZE);
  checkSize("maxBufferSize", max, size);
  const log = options.log ?? ((line: string) => console.error(line));
  const threads = checkThreads(THREAD_ENTRY, options, log);
  if (threads > 1) {
    const extra = { bufferSize: size, maxBufferSize: max };
    return await serveThreads(THREAD_ENTRY, options, extra, threads, log);
  }
  const listener = await listen(listenEndpoint(options, 0));
  return runEchoServer(
    listener,
    options,
    (core) => new SelectEngine(core, size, max),
  );
}

function checkSize(name: string, size: number, min: number): void {
  if (!Number.isSafeInteger(size) || size < min || size > MAX_BUFFER_SIZE) {
    throw new RangeError(
      `Cannot use ${name} "${size}": expected a whole number from ${min} to ${MAX_BUFFER_SIZE}`,
    );
  }
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const COMMAND = {
  name: "servers/select_echo.ts",
  summary:
    "The notes' select() echo server: one loop multiplexes every connection by readiness, each with a buffer it reads into only while there is room and writes from only while it holds data; the buffer grows from --buffer while reads fill it, up to --max-buffer, so a client that does not read costs at most --max-buffer bytes.",
  options: {
    ...ECHO_OPTIONS,
    buffer: {
      type: "string" as const,
      short: "b",
      default: String(DEFAULT_BUFFER_SIZE),
      arg: "BYTES",
      description:
        "Smallest buffer per connection (the notes' kBufferSize): each starts with it and waits for input in it.",
    },
    "max-buffer": {
      type: "string" as const,
      arg: "BYTES",
      description:
        `Largest buffer a connection's grows to while its reads fill it, the most held for one client (default ${DEFAULT_MAX_BUFFER_SIZE}, or --buffer if larger; equal to --buffer: fixed, as in the notes).`,
    },
    threads: THREADS_OPTION,
  },
  epilog: `Examples:
  deno run --allow-net=127.0.0.1 servers/select_echo.ts --port 0
  deno run --allow-net=127.0.0.1 servers/select_echo.ts -p ${NOTES_PORT} --buffer 16384 --idle-timeout 60
  deno run --allow-net=127.0.0.1 --allow-read servers/select_echo.ts -p ${NOTES_PORT} --threads 2
  ncat 127.0.0.1 ${NOTES_PORT}

${manyConnectionsHelp("servers/select_echo.ts", "select-echo")}

Prints "listening on HOST:PORT"; on SIGINT/SIGTERM stops accepting, writes
back what each connection has read (within --grace) and prints the stats.`,
};

/**
 * The command line: `deno run --allow-net servers/select_echo.ts [options]`.
 * Returns the exit code.
 */
export function main(args: string[]): Promise<number> {
  return echoServerMain(args, COMMAND, async (values, signal) => {
    const shared = await parseEchoOptions(values);
    const bufferSize = parseInteger(
      values.buffer,
      "--buffer",
      1,
      MAX_BUFFER_SIZE,
    );
    const maxBufferSize = values["max-buffer"] === undefined
      ? undefined
      : parseInteger(
        values["max-buffer"],
        "--max-buffer",
        bufferSize,
        MAX_BUFFER_SIZE,
      );
    const threads = parseThreads(values.threads, shared.unix);
    return serveSelectEcho({
      ...shared,
      bufferSize,
      maxBufferSize,
      threads,
      signal,
    });
  });
}

// A server thread loads this module as its Worker entry: it must serve, not
// parse a command line, whatever `import.meta.main` says there.
if (isServerThread(THREAD_ENTRY)) {
  runThread(serveSelectEcho);
} else if (import.meta.main) {
  runMain(main);
}
