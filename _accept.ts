/**
 * The accept loop every server of socket-notes shares: the notes' `accept()`
 * in a loop, with what their one-client programs never meet, a listener that
 * must go on serving whatever one connection or the system does to it, and
 * `--allow`/`--deny` applied before a byte is read.
 *
 * Private to this package.
 *
 * @module
 */

import { type AccessControl, admits } from "./_access.ts";
import { describeError, sleep } from "./_cli.ts";
import { formatAddr } from "./_net.ts";

/**
 * What a failed `accept()` says, and so what the loop does next:
 * - `closed`: the listener was closed (shutdown); stop.
 * - `connection`: the failure belongs to the one connection being accepted
 *   (it was reset or aborted in the listen backlog); accept again at once.
 * - `exhausted`: the process or the system is out of a resource (open
 *   files, buffers, memory); retrying at once would spin, so back off.
 * - `other`: anything else; back off too, as the safe choice.
 */
export type AcceptFailure = "closed" | "connection" | "exhausted" | "other";

/**
 * Errors of the connection, not of the listener. Linux's accept(2) passes a
 * new connection's pending network error up from `accept()` and asks callers
 * to retry on these as on EAGAIN; Deno adds ENOTCONN, from reading the peer's
 * address of a connection that was reset before it was accepted.
 */
const CONNECTION_CODES: ReadonlySet<string> = new Set([
  "ENOTCONN",
  "ECONNABORTED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EPROTO",
  "EPERM", // a firewall rule refused this connection
  "ENOPROTOOPT",
  "EOPNOTSUPP",
  "ENETDOWN",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EHOSTUNREACH",
  "ENONET",
]);

/** Out of a resource: only time (or a closed connection elsewhere) helps. */
const EXHAUSTION_CODES: ReadonlySet<string> = new Set([
  "EMFILE",
  "ENFILE",
  "ENOBUFS",
  "ENOMEM",
]);

/** Tells what a failed `accept()` means; see {@linkcode AcceptFailure}. */
export function classifyAcceptError(error: unknown): AcceptFailure {
  if (
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted
  ) return "closed";
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    if (CONNECTION_CODES.has(code)) return "connection";
    if (EXHAUSTION_CODES.has(code)) return "exhausted";
  }
  if (
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.TimedOut
  ) return "connection";
  return "other";
}

/** Counters an {@linkcode Acceptor} keeps. */
export interface AcceptCounters {
  /** Failed `accept()` calls that backed off (EMFILE and the like). */
  acceptErrors: number;
  /** Connections gone before they were accepted (reset in the backlog). */
  acceptAborted: number;
  /** Connections refused by `--allow`/`--deny`, closed at accept. */
  denied: number;
}

/** Options of {@linkcode Acceptor}. */
export interface AcceptorOptions {
  /** Aborting it ends {@linkcode Acceptor.accept} with `undefined`. */
  signal: AbortSignal;
  /** Where the loop's log lines go. */
  log: (line: string) => void;
  /** Counters to add to; a fresh object if omitted. */
  counters?: AcceptCounters;
  /** Who may connect (`--allow`, `--deny`); everyone if omitted. */
  access?: AccessControl;
}

/** First back-off after a resource error, in ms. */
const BACKOFF_FIRST = 100;
/** Longest back-off, in ms. */
const BACKOFF_MAX = 5_000;

/**
 * Accepts connections from a listener, one call at a time, and survives
 * every accept error: a connection lost before it was accepted is counted,
 * logged once per burst, and the next one is accepted at once; a resource
 * error backs off, 100 ms doubling to 5 s (mini-redis doubles from 1 s, but
 * a full second is long for a test server), so that EMFILE does not spin
 * (denoland/deno#10148).
 *
 * @example
 * ```ts
 * import { Acceptor } from "./_accept.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const stop = new AbortController();
 * const acceptor = new Acceptor(listener, { signal: stop.signal, log: console.error });
 * stop.abort();
 * console.log(await acceptor.accept()); // undefined
 * ```
 */
export class Acceptor<C extends Deno.Conn = Deno.Conn> {
  /** The listener accepted from. */
  readonly #listener: Deno.Listener<C>;
  /** Ends the loop. */
  readonly #signal: AbortSignal;
  /** Where log lines go. */
  readonly #log: (line: string) => void;
  /** Counters, shared with the caller's stats. */
  readonly counters: AcceptCounters;
  /** The next back-off after a resource error, in ms. */
  #backoff = BACKOFF_FIRST;
  /** Connections lost at accept since the last one accepted. */
  #burst = 0;
  /** Who may connect; undefined for everyone. */
  readonly #access: AccessControl | undefined;
  /** Connections denied since the last one admitted. */
  #deniedBurst = 0;

  /** Builds an acceptor of `listener`; see {@linkcode AcceptorOptions}. */
  constructor(listener: Deno.Listener<C>, options: AcceptorOptions) {
    this.#listener = listener;
    this.#signal = options.signal;
    this.#log = options.log;
    this.counters = options.counters ??
      { acceptErrors: 0, acceptAborted: 0, denied: 0 };
    const access = options.access;
    this.#access = access?.allow || access?.deny ? access : undefined;
  }

  /**
   * Returns the next accepted connection, or `undefined` once the listener
   * is closed or the signal has aborted. Never throws.
   */
  async accept(): Promise<C | undefined> {
    while (!this.#signal.aborted) {
      let conn: C;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#signal.aborted) return undefined;
        const failure = classifyAcceptError(error);
        if (failure === "closed") return undefined;
        if (failure === "connection") {
          // The kernel's accept succeeded, so descriptors are not short.
          this.counters.acceptAborted++;
          this.#backoff = BACKOFF_FIRST;
          if (this.#burst++ === 0) {
            this.#log(
              `accept: a connection was gone before it was accepted (${
                describeError(error)
              }); accepting on, the rest of this burst is counted`,
            );
          }
          continue;
        }
        this.counters.acceptErrors++;
        this.#log(
          `accept failed: ${
            describeError(error)
          }; retry in ${this.#backoff} ms`,
        );
        await sleep(this.#backoff, this.#signal);
        this.#backoff = Math.min(this.#backoff * 2, BACKOFF_MAX);
        continue;
      }
      this.#backoff = BACKOFF_FIRST;
      if (this.#burst > 1) {
        this.#log(
          `accept: ${this.#burst} connections in all were gone before they were accepted`,
        );
      }
      this.#burst = 0;
      if (this.#access !== undefined && !this.#admit(conn)) continue;
      return conn;
    }
    return undefined;
  }

  /**
   * Applies `--allow`/`--deny`: a refused peer is closed here, before a byte
   * is read or sent (a TLS connection before its handshake), and logged
   * once per burst of refusals.
   */
  #admit(conn: C): boolean {
    const remote = conn.remoteAddr;
    if (!("hostname" in remote) || admits(this.#access!, remote.hostname)) {
      if (this.#deniedBurst > 1) {
        this.#log(`access: ${this.#deniedBurst} connections in all denied`);
      }
      this.#deniedBurst = 0;
      return true;
    }
    this.counters.denied++;
    if (this.#deniedBurst++ === 0) {
      this.#log(
        `access: denied ${
          formatAddr(remote)
        } (--allow/--deny); the rest of this burst is counted`,
      );
    }
    try {
      conn.close();
    } catch {
      // Already gone.
    }
    return false;
  }
}
