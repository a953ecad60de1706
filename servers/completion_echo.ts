#!/usr/bin/env -S deno run --unstable-net --v8-flags=--max-semi-space-size=4 --allow-net
/**
 * The notes' "I/O Completion Ports" echo server: a completion port, worker
 * loops that take completions from it, and the notes' state machine
 * (IO_Read_Request, IO_Read_Completed, IO_Write_Request, IO_Write_Completed)
 * with its shutdown rule.
 *
 * How the Win32 calls of the notes map onto this module:
 *
 * | notes (Win32)                                          | here                                   |
 * | ------------------------------------------------------ | -------------------------------------- |
 * | `CreateIoCompletionPort(INVALID_HANDLE_VALUE, .., maxConcurrency)` | `new CompletionPort(maxConcurrency)` |
 * | `CreateIoCompletionPort(hDevice, m_iocp, completionKey, 0)` | `socket = port.associate(conn, key)` |
 * | `GetQueuedCompletionStatus(m_iocp, .., INFINITE)`      | `await port.get(signal)` / `worker.get(signal)` |
 * | `PostQueuedCompletionStatus(m_iocp, bytes, key, ovl)`  | `port.post(completion)`                |
 * | `WSARecv` (overlapped; completion queued to the port)  | `socket.recv(completion, buffer)`      |
 * | `WSASend` (overlapped; completion queued to the port)  | `socket.send(completion, bytes, length)` |
 * | `shutdown(m_socket, SD_RECEIVE)`                       | stop issuing reads (Deno has no `shutdown(SHUT_RD)`) |
 * | `shutdown(m_socket, SD_SEND)` + `closesocket`          | `socket.dissociate().close()`          |
 * | `CloseHandle(m_iocp)`                                  | `port.close()`: every waiting worker gets {@linkcode PORT_CLOSED} |
 * | the `OVERLAPPED` per I/O and `dwNumBytes`              | a {@linkcode Completion} record, reused per connection, and its `bytes` |
 *
 * The port is in `_completion_port.ts`, the engine and its buffers in
 * `_completion_engine.ts`, the threads in `_threads.ts`; this module is the
 * entry point, and the Worker entry of its own threads.
 *
 * The workers are async loops on one JavaScript thread, so "being processed"
 * means from `get()` until the worker asks again; with `--threads T` the
 * whole server runs T times in Web Workers that share the port through
 * SO_REUSEPORT, which is where the parallelism of the notes' worker threads
 * comes from.
 *
 * @example
 * ```ts ignore
 * import { serveCompletionEcho } from "./completion_echo.ts";
 * await using server = await serveCompletionEcho({ port: 0, workers: 2 });
 * console.log(`listening on ${server.addr.port}`);
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
import { CompletionEngine } from "./_completion_engine.ts";
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

export {
  type Completion,
  CompletionPort,
  type IoOperation,
  PORT_CLOSED,
  PortSocket,
  PortWorker,
} from "./_completion_port.ts";
export { CompletionEngine } from "./_completion_engine.ts";

/**
 * This module as its own Web Worker entry for `--threads`, with every
 * module a Worker loads from disk (the completion-echo task's
 * `--allow-read` lists the same).
 */
export const THREAD_ENTRY: ThreadEntry = {
  url: import.meta.url,
  name: "socket-notes completion_echo thread",
  modules: [
    "./completion_echo.ts",
    "./_completion_port.ts",
    "./_completion_engine.ts",
    ...SHARED_THREAD_MODULES,
  ],
};

/** Options of {@linkcode serveCompletionEcho}. */
export interface CompletionEchoOptions extends EchoServerOptions {
  /** Worker loops per thread: the notes' maxConcurrency. Default 2. */
  workers?: number;
  /**
   * Copies of the server, each in a Web Worker with its own listener on
   * the same port (SO_REUSEPORT; Linux only, elsewhere 1). Default 1.
   */
  threads?: number;
  /** Bind with SO_REUSEPORT even with one thread. Default false. */
  reusePort?: boolean;
}

/**
 * Starts the notes' I/O completion port echo server: the accept loop
 * associates each connection with a {@linkcode CompletionPort} and posts its
 * first IO_Read_Request; `workers` loops echo. With `threads` above 1 (Linux)
 * the server runs that many times in Web Workers on one port and the handle
 * sums their counters, each thread's kept in `stats().perThread`.
 *
 * Requires `--allow-net`; `threads` above 1 needs `--unstable-net` (set in
 * this package's deno.json) and `--allow-read` for the Worker's module.
 *
 * @param options Where to listen, limits, workers, threads.
 * @returns The running server; `close()` drains it and gives final stats.
 * @throws {RangeError} If `workers` or `threads` is not a whole number of
 * at least 1.
 * @throws {CliError} If the address cannot be bound.
 *
 * @example
 * ```ts ignore
 * import { serveCompletionEcho } from "./completion_echo.ts";
 * const server = await serveCompletionEcho({ port: 0, threads: 2 });
 * console.log(server.addr.port);
 * console.log(await server.close());
 * ```
 */
export function serveCompletionEcho(
  options: CompletionEchoOptions & { unix: string },
): Promise<EchoServer<Deno.UnixAddr>>;
/** Over TCP or TLS: the server's address is a `Deno.NetAddr`. */
export function serveCompletionEcho(
  options?: CompletionEchoOptions,
): Promise<EchoServer<Deno.NetAddr>>;
export async function serveCompletionEcho(
  options: CompletionEchoOptions = {},
): Promise<EchoServer<Addr>> {
  const workers = options.workers ?? 2;
  if (!Number.isSafeInteger(workers) || workers < 1) {
    throw new RangeError(
      `Cannot use workers "${workers}": expected a whole number of at least 1`,
    );
  }
  const log = options.log ?? ((line: string) => console.error(line));
  const threads = checkThreads(THREAD_ENTRY, options, log);
  if (threads === 1) {
    const listener = await listen(listenEndpoint(options, 0));
    return runEchoServer(
      listener,
      options,
      (core) => new CompletionEngine(core, workers),
    );
  }
  return await serveThreads(THREAD_ENTRY, options, { workers }, threads, log);
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const COMMAND = {
  name: "servers/completion_echo.ts",
  summary:
    "The notes' I/O completion port echo server: a completion port with --workers loops (maxConcurrency), the notes' IO_Read/IO_Write requests and completions, the shutdown rule for a client that closes while its echo is being written, and --threads copies sharing the port (SO_REUSEPORT, Linux).",
  options: {
    ...ECHO_OPTIONS,
    workers: {
      type: "string" as const,
      short: "w",
      default: "2",
      arg: "N",
      description:
        "Worker loops taking completions: the notes' maxConcurrency.",
    },
    threads: THREADS_OPTION,
  },
  epilog: `Examples:
  deno run --allow-net=127.0.0.1 servers/completion_echo.ts --port 0
  deno run --allow-net=127.0.0.1 --allow-read servers/completion_echo.ts -p ${NOTES_PORT} --threads 2
  ncat 127.0.0.1 ${NOTES_PORT}

${manyConnectionsHelp("servers/completion_echo.ts", "completion-echo")}

Prints "listening on HOST:PORT"; on SIGINT/SIGTERM stops accepting, lets
every connection finish its echo (within --grace) and prints the stats.`,
};

/**
 * The command line: `deno run --allow-net --allow-read
 * servers/completion_echo.ts [options]`. Returns the exit code.
 */
export function main(args: string[]): Promise<number> {
  return echoServerMain(args, COMMAND, async (values, signal) => {
    const shared = await parseEchoOptions(values);
    const workers = parseInteger(values.workers, "--workers", 1, 1024);
    const threads = parseThreads(values.threads, shared.unix);
    return serveCompletionEcho({ ...shared, workers, threads, signal });
  });
}

// A server thread loads this module as its Worker entry: it must serve, not
// parse a command line, whatever `import.meta.main` says there.
if (isServerThread(THREAD_ENTRY)) {
  runThread(serveCompletionEcho);
} else if (import.meta.main) {
  runMain(main);
}
