#!/usr/bin/env -S deno run --allow-net
/**
 * The notes' "Server Code": a blocking Test Server that serves one client at
 * a time. On accept it sends `Test Server\n`, reads one line, sends
 * `Say Goodbye\n`, reads one more line, and closes.
 *
 * It departs from the notes on purpose where they are fragile: a line is read
 * up to `\n` however TCP splits it (the notes' single `recv()` may return half
 * a line or two), a line over 1000 bytes (the notes' buffer) closes that
 * connection instead of overrunning, every read and write has a timeout and
 * the whole conversation a deadline, so that neither a silent nor a
 * trickling client can hold a one-at-a-time server for long, a line is logged
 * with its control characters escaped, and the server goes on to the next
 * client instead of waiting for Enter.
 *
 * It listens on any endpoint of the network layer: TCP, TLS (`tls`), or a
 * Unix socket (`unix`), with `allow`/`deny` lists as ncat's.
 *
 * Requires `--allow-net` (a Unix socket: `--allow-net=unix:PATH
 * --allow-read=PATH --allow-write=PATH`).
 *
 * @example Serve one client on a free port
 * ```ts
 * import { serveSequential } from "./sequential.ts";
 *
 * await using server = await serveSequential({ port: 0, once: true });
 * console.log(`listening on port ${server.addr.port}`);
 * ```
 *
 * @module
 */

import {
  type CommandSpec,
  MAX_TIMER_MS,
  NOTES_PORT,
  parseCommandLine,
  parseSeconds,
  runMain,
  shutdownSignal,
  SIGNALS_HELP,
} from "../_cli.ts";
import {
  closeQuietly,
  DeadlineError,
  escapeControl,
  LineReader,
  LineTooLongError,
  MAX_LINE_BYTES,
  withDeadline,
  writeText,
} from "../_line_io.ts";
import { Acceptor } from "../_accept.ts";
import { type Addr, formatAddr, listen, printListening } from "../_net.ts";
import {
  accessControl,
  listenEndpoint,
  parseServerEndpoint,
  SERVER_ENDPOINT_OPTIONS,
  type ServerEndpointOptions,
  TLS_LIMITS_HELP,
} from "../_net_options.ts";
import { describeTlsError } from "../_tls_errors.ts";

export { NOTES_PORT };

/**
 * Options of {@linkcode serveSequential}: where to listen (TCP by default;
 * `port` defaults to 39304, the notes' `0x9988`), then the conversation's.
 */
export interface SequentialServerOptions extends ServerEndpointOptions {
  /** Bound on each read and write, in milliseconds. Default 30000. */
  timeout?: number;
  /**
   * Bound on a whole conversation, in milliseconds: a client that trickles
   * (a byte every `timeout - 1` ms) is cut at it. Default twice `timeout`.
   */
  deadline?: number;
  /** Serve one client, then stop (what the notes' program does). */
  once?: boolean;
  /** Receives the transcript lines. Default `console.log`. */
  log?: (line: string) => void;
  /** Receives problems with a client (timeout, long line). Default `console.error`. */
  warn?: (line: string) => void;
  /** Aborting it stops the server. */
  signal?: AbortSignal;
}

/** A running Test Server; `A` is its address type (TCP/TLS or Unix). */
export interface SequentialServer<A extends Addr = Deno.NetAddr>
  extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked). */
  readonly addr: A;
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
 * await using server = await serveSequential({ port: 0, log: () => {} });
 * console.log(server.addr.port > 0); // true
 * ```
 */
export function serveSequential(
  options: SequentialServerOptions & { unix: string },
): Promise<SequentialServer<Deno.UnixAddr>>;
/** Over TCP or TLS: the server's address is a `Deno.NetAddr`. */
export function serveSequential(
  options?: SequentialServerOptions,
): Promise<SequentialServer<Deno.NetAddr>>;
export async function serveSequential(
  options: SequentialServerOptions = {},
): Promise<SequentialServer<Addr>> {
  const log = options.log ?? ((line: string) => console.log(line));
  const warn = options.warn ?? ((line: string) => console.error(line));
  const timeout = options.timeout ?? 30_000;
  const deadline = options.deadline ?? Math.min(2 * timeout, MAX_TIMER_MS);
  const access = accessControl(options);
  const listener = await listen(listenEndpoint(options, NOTES_PORT));
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
    // The accept loop every server shares (_net.ts): a queued client that
    // resets before its turn costs only itself.
    const acceptor = new Acceptor(listener, {
      signal: stop.signal,
      log: warn,
      access,
    });
    while (!stop.signal.aborted) {
      log("waiting for connection");
      const conn = await acceptor.accept();
      if (conn === undefined) break;
      current = conn;
      await serveClient(conn, { log, warn, timeout, deadline });
      current = undefined;
      served++;
      if (options.once) break;
    }
    stopListening();
    options.signal?.removeEventListener("abort", onAbort);
    return served;
  }

  // Started on the next task, not microtask: a caller that awaits this
  // function resumes first and can print the `listening on` line before
  // the first line of the transcript.
  const finished = new Promise((resolve) => setTimeout(resolve, 0)).then(run);
  return {
    addr: listener.addr as Addr,
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
  conn: Deno.Conn,
  { log, warn, timeout, deadline }: {
    log: (line: string) => void;
    warn: (line: string) => void;
    timeout: number;
    deadline: number;
  },
): Promise<void> {
  const peer = formatAddr(conn.remoteAddr as Addr);
  log(`accepted connection from ${peer}`);
  const reader = new LineReader(conn, MAX_LINE_BYTES, timeout);
  // Each read's timeout alone lets a client hold the server for as long as
  // it trickles a byte per timeout; the deadline bounds the conversation.
  // Closing the connection is the only way to end a pending Deno read.
  let cut = false;
  const timer = setTimeout(() => {
    cut = true;
    closeQuietly(conn);
  }, deadline);
  try {
    if ("handshake" in conn) {
      // TLS: a failed handshake is reported as such, not as a failed write.
      try {
        await withDeadline(
          (conn as Deno.TlsConn).handshake(),
          timeout,
          "finish the TLS handshake",
          () => closeQuietly(conn),
        );
      } catch (error) {
        if (error instanceof DeadlineError || cut) throw error;
        return warn(
          `${peer}: TLS handshake failed: ${describeTlsError(error)}`,
        );
      }
    }
    await writeText(conn, "Test Server\n", timeout);
    const first = await reader.readLine();
    if (first === null) return warn(`${peer} closed before sending a line`);
    log(`got '${escapeControl(first)}'`);
    await writeText(conn, "Say Goodbye\n", timeout);
    const second = await reader.readLine();
    if (second === null) return warn(`${peer} closed before saying goodbye`);
    log(`got '${escapeControl(second)}'`);
  } catch (error) {
    if (cut) {
      warn(
        `timeout: ${peer}: conversation not over after ${
          deadline / 1000
        } s (--deadline); cut`,
      );
    } else if (error instanceof LineTooLongError) {
      warn(`error: ${peer} sent a line longer than ${MAX_LINE_BYTES} bytes`);
    } else if (error instanceof DeadlineError) {
      warn(`timeout: ${peer}: ${error.message}`);
    } else if (error instanceof Deno.errors.BadResource) {
      warn(`${peer}: connection closed by shutdown`);
    } else {
      warn(`${peer}: ${error instanceof Error ? error.message : error}`);
    }
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

const COMMAND: CommandSpec = {
  name: "servers/sequential.ts",
  summary:
    "The notes' Test Server: greets each client with 'Test Server', reads a " +
    "line, says 'Say Goodbye', reads a line, closes; one client at a time.",
  options: {
    ...SERVER_ENDPOINT_OPTIONS,
    timeout: {
      type: "string",
      default: "30",
      arg: "SECONDS",
      description: "Bound on each read and write of a client.",
    },
    deadline: {
      type: "string",
      arg: "SECONDS",
      description:
        "Bound on a whole conversation: a client still talking is cut, " +
        "so a trickle cannot hold the server (default twice --timeout).",
    },
    once: {
      type: "boolean",
      description: "Serve one client, then exit (as the notes' program does).",
    },
  },
  epilog: `Stops cleanly (exit 0) on SIGINT or SIGTERM.\n${SIGNALS_HELP}\n` +
    TLS_LIMITS_HELP,
};

/** The command line: parse, listen, print `listening on`, serve. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  const endpoint = await parseServerEndpoint(parsed.values);
  const timeout = parseSeconds(parsed.values.timeout, "--timeout");
  const deadline = parsed.values.deadline === undefined
    ? Math.min(2 * timeout, MAX_TIMER_MS)
    : parseSeconds(parsed.values.deadline, "--deadline");
  using shutdown = shutdownSignal();
  const server = await serveSequential({
    ...endpoint,
    timeout,
    deadline,
    once: parsed.values.once === true,
    signal: shutdown.signal,
  });
  printListening(server.addr);
  await server.finished;
  return 0;
}

if (import.meta.main) runMain(main);
