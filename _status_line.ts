/**
 * One live status line on stderr: on a terminal, rewritten in place and cut
 * to the terminal's width (a line that wraps cannot be rewritten by `\r`, and
 * leaves a stale copy per update); elsewhere, one line per update, whole.
 * Private to this package.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Moves to the start of the line and clears it. */
const CLEAR = "\r\x1b[K";

/** Columns assumed when the terminal does not say. */
const FALLBACK_COLUMNS = 80;

/**
 * Joins `parts` with ", " into at most `columns - 1` characters (the last
 * column left free, where some terminals wrap early): the parts that do not
 * fit are left off, and a first part too long is cut.
 */
export function fitParts(parts: readonly string[], columns: number): string {
  const room = Math.max(1, columns - 1);
  let line = "";
  for (const part of parts) {
    const next = line === "" ? part : `${line}, ${part}`;
    if (next.length > room) break;
    line = next;
  }
  if (line === "" && parts.length > 0) line = parts[0]!.slice(0, room);
  return line;
}

/** The width of the terminal on stderr, or 80 if it does not say. */
function columns(): number {
  try {
    return Deno.consoleSize().columns || FALLBACK_COLUMNS;
  } catch {
    return FALLBACK_COLUMNS;
  }
}

/**
 * A status line on stderr. `show` replaces it (on a terminal) or prints a
 * new one; `clear` removes a live one before the final report.
 */
export class StatusLine implements Disposable {
  /** Whether stderr is a terminal, so the line is rewritten in place. */
  readonly live: boolean;
  #shown = false;

  /** `live` defaults to whether stderr is a terminal. */
  constructor(live: boolean = Deno.stderr.isTerminal()) {
    this.live = live;
  }

  /** Shows `parts` (most important first) as the status. */
  show(parts: readonly string[]): void {
    if (!this.live) {
      console.error(parts.join(", "));
      return;
    }
    Deno.stderr.writeSync(encoder.encode(CLEAR + fitParts(parts, columns())));
    this.#shown = true;
  }

  /** Clears a live line, if one is shown. */
  clear(): void {
    if (!this.#shown) return;
    Deno.stderr.writeSync(encoder.encode(CLEAR));
    this.#shown = false;
  }

  /** Clears the line. */
  [Symbol.dispose](): void {
    this.clear();
  }
}
