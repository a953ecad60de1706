/**
 * The probes behind netstat's `--check` and `--wait`: one TCP connect that
 * says open, refused or no answer; and a wait that repeats it, backing off,
 * until the port accepts or the time is up.
 *
 * Private to tools/netstat.ts, which re-exports what is public.
 *
 * @module
 */

import { describeError, sleep } from "../_cli.ts";
import { connect, ConnectError, formatAddr } from "../_net.ts";

/** Where to connect: a host name or address, and a port. */
export interface Target {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** TCP port, 1 to 65535. */
  port: number;
}

/**
 * Parses `HOST:PORT`, with an IPv6 address in brackets (`[::1]:8080`).
 *
 * @param text The target as a user writes it.
 * @param name What the message calls it, as `--check`.
 * @param zero Whether port 0 (a free one, for an address to listen on) is
 * taken.
 * @returns The host (without brackets) and port.
 * @throws {RangeError} If there is no host or port, the port is not 1 to
 * 65535 (or 0, with `zero`), an IPv6 address lacks its brackets, or the
 * colon after them.
 *
 * @example
 * ```ts
 * import { parseTarget } from "./netstat.ts";
 *
 * console.log(parseTarget("[::1]:8080")); // { hostname: "::1", port: 8080 }
 * ```
 */
export function parseTarget(
  text: string,
  name = "target",
  zero = false,
): Target {
  const what = `Cannot parse ${name} "${text}"`;
  let hostname: string;
  let port: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    hostname = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (close < 0 || hostname === "" || rest === "") {
      throw new RangeError(
        `${what}: expected HOST:PORT, as 127.0.0.1:8080 or [::1]:8080`,
      );
    }
    if (!rest.startsWith(":")) {
      throw new RangeError(
        `${what}: no colon between "]" and the port, as [::1]:8080`,
      );
    }
    port = rest.slice(1);
  } else {
    const at = text.lastIndexOf(":");
    hostname = text.slice(0, at);
    port = text.slice(at + 1);
    if (at < 0 || hostname === "") {
      throw new RangeError(
        `${what}: expected HOST:PORT, as 127.0.0.1:8080`,
      );
    }
    if (hostname.includes(":")) {
      throw new RangeError(
        `${what}: put an IPv6 address in brackets, as [::1]:8080`,
      );
    }
  }
  const n = /^\d+$/.test(port) ? Number(port) : NaN;
  if (!((n >= 1 || (zero && n === 0)) && n <= 65535)) {
    throw new RangeError(
      `${what}: the port must be 1 to 65535${
        zero ? ", or 0 for a free one" : ""
      }`,
    );
  }
  return { hostname, port: n };
}

/** How one connect attempt ended. */
export type ProbeStatus = "open" | "refused" | "no answer" | "error";

/** What {@linkcode checkPort} found. */
export interface CheckResult extends Target {
  /**
   * `open`: connected; `refused`: nothing listens there; `no answer`: no
   * reply within the timeout (a firewall that drops, a host that is down);
   * `error`: anything else, as a name that does not resolve.
   */
  status: ProbeStatus;
  /** How long the connect took, or how long it waited, in ms. */
  ms: number;
  /** Why it failed, for `error` (and `refused`, `no answer`). */
  reason?: string;
}

/** Options of {@linkcode checkPort}. */
export interface CheckOptions {
  /** How long to wait for an answer, in ms; default 3000. */
  timeout?: number;
  /** Stops the attempt early (it then rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Tries one TCP connect to `target` and says how it went; a connection
 * that opens is closed at once.
 *
 * Requires `--allow-net` to the target.
 *
 * @param target Where to connect.
 * @param options The timeout and an abort signal.
 * @returns Whether it is open, refused or silent, and how long it took.
 * @throws The signal's reason if `options.signal` aborts; a `NotCapable`
 * error without `--allow-net`.
 *
 * @example
 * ```ts
 * import { checkPort } from "./netstat.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const result = await checkPort({ hostname: "127.0.0.1", port: listener.addr.port });
 * console.log(result.status); // "open"
 * ```
 */
export async function checkPort(
  target: Target,
  options: CheckOptions = {},
): Promise<CheckResult> {
  const timeout = options.timeout ?? 3000;
  if (!(timeout > 0)) {
    throw new RangeError(
      `Cannot use timeout "${timeout}": expected ms above 0`,
    );
  }
  options.signal?.throwIfAborted();
  const start = performance.now();
  try {
    const conn = await connect(
      { transport: "tcp", hostname: target.hostname, port: target.port },
      { timeout, ...(options.signal ? { signal: options.signal } : {}) },
    );
    const ms = performance.now() - start;
    conn.close();
    return { ...target, status: "open", ms };
  } catch (wrapped) {
    const ms = performance.now() - start;
    if (options.signal?.aborted) throw options.signal.reason;
    const error = wrapped instanceof ConnectError ? wrapped.cause : wrapped;
    if (error instanceof Deno.errors.NotCapable) throw error;
    // The caller's signal has not aborted: the connect's own timeout did.
    if (error instanceof DOMException && error.name === "AbortError") {
      return {
        ...target,
        status: "no answer",
        ms,
        reason: `no answer within ${timeout / 1000} s`,
      };
    }
    if (error instanceof Deno.errors.ConnectionRefused) {
      return { ...target, status: "refused", ms, reason: "connection refused" };
    }
    return { ...target, status: "error", ms, reason: describeError(error) };
  }
}

/** Options of {@linkcode waitForPort}. */
export interface WaitOptions {
  /** The port to wait for. */
  port: number;
  /** Host to connect to; default `127.0.0.1`. */
  hostname?: string;
  /** How long to wait in all, in ms; default 30000. */
  timeout?: number;
  /** Stops waiting early (the promise then rejects with its reason). */
  signal?: AbortSignal;
  /** Called after each failed attempt (for progress). */
  onAttempt?: (attempt: { attempt: number; result: CheckResult }) => void;
}

/** What {@linkcode waitForPort} reports once the port accepts. */
export interface WaitResult extends Target {
  /** Connect attempts made, the successful one included. */
  attempts: number;
  /** Time from the call until the successful connect, in ms. */
  elapsedMs: number;
}

/** First pause between attempts, in ms; it doubles up to the cap. */
const WAIT_FIRST_DELAY = 10;
/**
 * Longest pause, in ms: short, so a server that comes up is seen within a
 * quarter second, yet no busy loop.
 */
const WAIT_MAX_DELAY = 250;
/** Longest single attempt, in ms, so a dropped SYN does not eat the budget. */
const WAIT_ATTEMPT_LIMIT = 2000;

/**
 * Waits until something accepts TCP connections on a port: tries to
 * connect, and after each failure pauses 10 ms, doubling up to 250 ms,
 * until a connect succeeds or the timeout passes. For scripts and CI that
 * start a server and must wait for it.
 *
 * Requires `--allow-net` to the host.
 *
 * @param options Port, host, timeout, abort signal, progress callback.
 * @returns How many attempts it took and how long.
 * @throws {Deno.errors.TimedOut} If nothing accepted within the timeout;
 * the message names the last failure.
 * @throws {RangeError} If the port or timeout is out of range.
 *
 * @example
 * ```ts
 * import { waitForPort } from "./netstat.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const up = await waitForPort({ port: listener.addr.port, timeout: 5000 });
 * console.log(up.attempts); // 1
 * ```
 */
export async function waitForPort(options: WaitOptions): Promise<WaitResult> {
  const target = {
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port,
  };
  if (
    !Number.isInteger(target.port) || target.port < 1 || target.port > 65535
  ) {
    throw new RangeError(
      `Cannot wait for port "${target.port}": expected 1 to 65535`,
    );
  }
  const timeout = options.timeout ?? 30_000;
  if (!(timeout > 0)) {
    throw new RangeError(
      `Cannot use timeout "${timeout}": expected ms above 0`,
    );
  }
  const start = performance.now();
  const deadline = start + timeout;
  let delay = WAIT_FIRST_DELAY;
  let last: CheckResult | undefined;
  for (let attempt = 1;; attempt++) {
    const budget = Math.max(
      1,
      Math.min(deadline - performance.now(), WAIT_ATTEMPT_LIMIT),
    );
    const result = await checkPort(target, {
      timeout: budget,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (result.status === "open") {
      return {
        ...target,
        attempts: attempt,
        elapsedMs: performance.now() - start,
      };
    }
    // The last attempt gets what is left of the timeout, often a
    // millisecond: that it had no answer in time says nothing of the port
    // (on a busy machine a refused connect takes longer), so the error
    // names the attempt before it.
    const cut = result.status === "no answer" && budget < WAIT_ATTEMPT_LIMIT;
    if (!cut || last === undefined) last = result;
    options.onAttempt?.({ attempt, result });
    const left = deadline - performance.now();
    if (left <= 0) {
      throw new Deno.errors.TimedOut(
        `Nothing accepted connections on ${formatAddr(target)} within ` +
          `${timeout / 1000} s (${attempt} attempt${
            attempt === 1 ? "" : "s"
          }, ` +
          `last: ${last.reason ?? last.status})`,
      );
    }
    await sleep(Math.min(delay, left), options.signal);
    options.signal?.throwIfAborted();
    delay = Math.min(delay * 2, WAIT_MAX_DELAY);
  }
}
