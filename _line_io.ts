/**
 * Line-at-a-time I/O with deadlines, shared by the notes' Test Server and
 * Test Client. The notes read a message with one `recv()`, which is a bug:
 * TCP may deliver a line in pieces, or two lines in one read. A
 * {@linkcode LineReader} reads up to `\n` however the bytes arrive, keeps what
 * follows for the next line, and refuses a line longer than its buffer (the
 * notes' `char buf[1000]`). Every read and write has a deadline so that one
 * silent peer cannot hold a one-at-a-time server forever.
 *
 * Private to this package.
 *
 * @module
 */

import { writeAll } from "./_net.ts";

/** The notes' buffer size: `char buf[1000]`. */
export const MAX_LINE_BYTES = 1000;

/** A line longer than the reader's limit arrived. */
export class LineTooLongError extends Error {
  /** Builds the error for a limit of `limit` bytes. */
  constructor(limit: number) {
    super(`Line longer than ${limit} bytes`);
    this.name = "LineTooLongError";
  }
}

/** A read or write did not finish before its deadline. */
export class DeadlineError extends Error {
  /** Builds the error for an operation `what` that took over `ms`. */
  constructor(what: string, ms: number) {
    super(`Timed out after ${ms / 1000} s waiting to ${what}`);
    this.name = "DeadlineError";
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Runs `op` against a deadline of `ms` milliseconds. On expiry `onTimeout`
 * runs (callers close the connection, which is the only way to cancel a
 * pending Deno read) and the promise rejects with a {@linkcode DeadlineError}.
 */
export async function withDeadline<T>(
  op: Promise<T>,
  ms: number,
  what: string,
  onTimeout: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new DeadlineError(what, ms));
    }, ms);
  });
  // The losing operation rejects once the connection is closed; that
  // rejection carries no news.
  op.catch(() => {});
  try {
    // A race of two short-lived promises, settled once: nothing lingers.
    return await Promise.race([op, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads `\n`-terminated lines from a connection, whatever the TCP split. */
export class LineReader {
  #conn: Deno.Conn;
  #buf: Uint8Array;
  #start = 0; // first byte not yet returned
  #end = 0; // one past the last byte read
  #timeout: number;

  /**
   * Builds a reader over `conn` with a `limit`-byte buffer and a per-read
   * deadline of `timeout` milliseconds (closing `conn` on expiry).
   */
  constructor(conn: Deno.Conn, limit = MAX_LINE_BYTES, timeout = 30_000) {
    this.#conn = conn;
    this.#buf = new Uint8Array(limit);
    this.#timeout = timeout;
  }

  /**
   * Returns the next line without its `\n` (and without a `\r` before it),
   * the unterminated rest if the peer ends its data mid-line, or `null` at
   * the end of the data.
   *
   * @throws {LineTooLongError} If no `\n` comes within the limit.
   * @throws {DeadlineError} If a read takes longer than the timeout.
   */
  async readLine(): Promise<string | null> {
    let scanned = this.#start;
    while (true) {
      const nl = this.#buf.subarray(scanned, this.#end).indexOf(10);
      if (nl >= 0) {
        const stop = scanned + nl;
        const line = this.#text(this.#start, stop);
        this.#start = stop + 1;
        return line;
      }
      scanned = this.#end;
      if (this.#start > 0) {
        // Move the partial line to the front so the whole buffer is usable.
        this.#buf.copyWithin(0, this.#start, this.#end);
        scanned -= this.#start;
        this.#end -= this.#start;
        this.#start = 0;
      }
      if (this.#end === this.#buf.length) {
        throw new LineTooLongError(this.#buf.length);
      }
      const n = await withDeadline(
        this.#conn.read(this.#buf.subarray(this.#end)),
        this.#timeout,
        "read a line",
        () => this.#conn.close(),
      );
      if (n === null) {
        if (this.#end === this.#start) return null;
        const rest = this.#text(this.#start, this.#end);
        this.#start = this.#end;
        return rest;
      }
      this.#end += n;
    }
  }

  #text(from: number, to: number): string {
    if (to > from && this.#buf[to - 1] === 13) to--;
    return decoder.decode(this.#buf.subarray(from, to));
  }
}

/**
 * Writes all of `text` (a write may be partial), with a deadline of
 * `timeout` milliseconds that closes `conn` on expiry.
 *
 * @throws {DeadlineError} If the peer does not take the bytes in time.
 */
export async function writeText(
  conn: Deno.Conn,
  text: string,
  timeout = 30_000,
): Promise<void> {
  await withDeadline(
    writeAll(conn, encoder.encode(text)),
    timeout,
    "write",
    () => conn.close(),
  );
}

/** Closes `conn` unless it is already closed (a deadline may have closed it). */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

/**
 * Escapes what a peer sent for a log line, so that it cannot write to the
 * operator's terminal: C0 and C1 control characters and DEL become `\xHH`
 * (`\0`, `\t`, `\r`, `\n` by their short names), the Unicode line
 * separators and bidirectional overrides (which reorder what the operator
 * sees) become `\u{HHHH}`, a backslash is doubled, and everything else stays
 * as it is.
 *
 * @example
 * ```ts
 * import { escapeControl } from "./_line_io.ts";
 *
 * console.log(escapeControl("\x1b[2Jhi\r")); // \x1b[2Jhi\r
 * ```
 */
export function escapeControl(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f-\x9f\\\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => {
      switch (c) {
        case "\\":
          return "\\\\";
        case "\0":
          return "\\0";
        case "\t":
          return "\\t";
        case "\r":
          return "\\r";
        case "\n":
          return "\\n";
        default: {
          const code = c.charCodeAt(0).toString(16);
          return c < "\u0100" ? `\\x${code.padStart(2, "0")}` : `\\u{${code}}`;
        }
      }
    },
  );
}
