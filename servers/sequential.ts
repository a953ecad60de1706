/**
 * The notes' "Server Code": a blocking Test Server that serves one client at
 * a time. On accept it sends `Test Server\n`, reads one line, sends
 * `Say Goodbye\n`, reads one more line, and closes.
 *
 * It departs from the notes on purpose where they are fragile: a line is read
 * up to `\n` however TCP splits it (the notes' single `recv()` may return half
 * a line or two), a line over 1000 bytes (the notes' buffer) closes that
 * connection instead of overrunning, every read and write has a timeout so a
 * silent client cannot hold a one-at-a-time server forever, and the server
 * goes on to the next client instead of waiting for Enter.
 *
 * Requires `--allow-net`.
 *
 * @example Serve one client on a free port
 * ```ts
 * import { serveSequential } from "./sequential.ts";
 *
 * await using server = serveSequential({ port: 0, once: true });
 * console.log(`listening on port ${server.addr.port}`);
 * ```
 *
 * @module
 */

import {
  type CommandSpec,
  formatAddress,
  LISTEN_OPTIONS,
  listenTcp,
  NOTES_PORT,
  parseCommandLine,
  parseHost,
  parsePort,
  parseSeconds,
  printListening,
  runMain,
  shutdownSignal,
  SIGNALS_HELP,
} from "../_cli.ts";
import {
  closeQuietly,
  DeadlineError,
  LineReader,
  LineTooLongError,
  MAX_LINE_BYTES,
  writeText,
} from "../_line_io.ts";

export { NOTES_PORT };

/** Options of {@linkcode serveSequential}. */
export interface SequentialServerOptions {
  /** Address to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Port to bind; 0 picks a free one. Default 39304 (the notes' `0x9988`). */
  port?: number;
  /** Bound on each read and write, in milliseconds. Default 30000. */
  timeout?: number;
  /** Serve one client, then stop (what the notes' program does). */
  once?: boolean;
  /** Receives the transcript lines. Default `console.log`. */
  log?: (line: string) => void;
  /** Receives problems with a client (timeout, long line). Default `console.error`. */
  warn?: (line: string) => void;
  /** Aborting it stops the server. */
  signal?: AbortSignal;
}

/** A running Test Server. */
export interface SequentialServer extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** Resolves with the number of clients served once the server stops. */
  readonly finished: Promise<number>;
  /** Stops the server (closing a client being served) and waits for it. */
  close(): Promise<number>;
}

/**
 * Starts the notes' Test Server: one client at a time, the four-step
 * conversation, then the next client.
 *
 * Requires `--allow-net`.
 *
 * @param options Where to listen, the timeout, and where the transcript goes.
 * @returns The running server; `await using` closes it.
 * @throws {CliError} If the address cannot be bound.
 *
 * @example
 * ```ts
 * import { serveSequential } from "./sequential.ts";
 *
 * await using server = serveSequential({ port: 0, log: () => {} });
 * console.log(server.addr.port > 0); // true
 * ```
 */
export function serveSequential(
  options: SequentialServerOptions = {},
): SequentialServer {
  const log = options.log ?? ((line: string) => console.log(line));
  const warn = options.warn ?? ((line: string) => console.error(line));
  const timeout = options.timeout ?? 30_000;
  const listener = listenTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? NOTES_PORT,
  });
  const stop = new AbortController();
  let current: Deno.Conn | undefined;
  let listening = true;
  const stopListening = () => {
    if (listening) listener.close();
    listening = false;
  };
  const onAbort = () => {
    stop.abort();
    stopListening();
    // Closing the client being served interrupts its pending read at once.
    if (current) closeQuietly(current);
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();

  async function run(): Promise<number> {
    let served = 0;
    while (!stop.signal.aborted) {
      log("waiting for connection");
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (stop.signal.aborted) break;
        throw error;
      }
      current = conn;
      await serveClient(conn, { log, warn, timeout });
      current = undefined;
      served++;
      if (options.once) break;
    }
    stopListening();
    options.signal?.removeEventListener("abort", onAbort);
    return served;
  }

  // Started on the next microtask, so that a caller can print the
  // `listening on` line before the first line of the transcript.
  const finished = Promise.resolve().then(run);
  return {
    addr: listener.addr,
    finished,
    close() {
      if (!stop.signal.aborted) onAbort();
      return finished;
    },
    async [Symbol.asyncDispose]() {
      if (!stop.signal.aborted) onAbort();
      await finished;
    },
  };
}

/**
 * Holds the notes' conversation with one client, then closes the
 * connection. Problems are reported through `warn` and never thrown: a bad
 * client must not stop the server.
 */
async function serveClient(
  conn: Deno.TcpConn,
  { log, warn, timeout }: {
    log: (line: string) => void;
    warn: (line: string) => void;
    timeout: number;
  },
): Promise<void> {
  const peer = formatAddress(conn.remoteAddr);
  log(`accepted connection from ${peer}`);
  const reader = new LineReader(conn, MAX_LINE_BYTES, timeout);
  try {
    await writeText(conn, "Test Server\n", timeout);
    const first = await reader.readLine();
    if (first === null) return warn(`${peer} closed before sending a line`);
    log(`got '${first}'`);
    await writeText(conn, "Say Goodbye\n", timeout);
    const second = await reader.readLine();
    if (second === null) return warn(`${peer} closed before saying goodbye`);
    log(`got '${second}'`);
  } catch (error) {
    if (error instanceof LineTooLongError) {
      warn(`error: ${peer} sent a line longer than ${MAX_LINE_BYTES} bytes`);
    } else if (error instanceof DeadlineError) {
      warn(`timeout: ${peer}: ${error.message}`);
    } else if (error instanceof Deno.errors.BadResource) {
      warn(`${peer}: connection closed by shutdown`);
    } else {
      warn(`${peer}: ${error instanceof Error ? error.message : error}`);
    }
  } finally {
    closeQuietly(conn);
  }
}

const COMMAND: CommandSpec = {
  name: "servers/sequential.ts",
  summary:
    "The notes' Test Server: greets each client with 'Test Server', reads a " +
    "line, says 'Say Goodbye', reads a line, closes; one client at a time.",
  options: {
    ...LISTEN_OPTIONS,
    timeout: {
      type: "string",
      default: "30",
      arg: "SECONDS",
      description: "Bound on each read and write of a client.",
    },
    once: {
      type: "boolean",
      description: "Serve one client, then exit (as the notes' program does).",
    },
  },
  epilog: `Stops cleanly (exit 0) on SIGINT or SIGTERM.\n${SIGNALS_HELP}`,
};

/** The command line: parse, listen, print `listening on`, serve. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  const hostname = parseHost(parsed.values.hostname, "--hostname");
  const port = parsePort(parsed.values.port);
  const timeout = parseSeconds(parsed.values.timeout, "--timeout");
  using shutdown = shutdownSignal();
  const server = serveSequential({
    hostname,
    port,
    timeout,
    once: parsed.values.once === true,
    signal: shutdown.signal,
  });
  printListening(server.addr);
  await server.finished;
  return 0;
}

if (import.meta.main) runMain(main);
