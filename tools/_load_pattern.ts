/**
 * The load generator's byte pattern and its check: what every connection
 * sends, and how an echoed byte is compared with what was sent at its
 * offset. Private to `tools/load.ts`.
 *
 * @module
 */

import { fillXorshift32 } from "../_random.ts";

/** Most memory the shared byte pattern may take. */
const PATTERN_BUDGET = 64 * 1024 * 1024;

/**
 * The bytes every connection sends: `slots` random messages laid end to end,
 * each on an 8-byte boundary so that checks can compare 4 bytes at a time.
 * Connection `i` sends slot `i`, then `i + 1`, and so on (mod `slots`), so at
 * any message number no two connections (up to `slots` of them) send the same
 * bytes, and a server that mixes connections up is caught. Given a message
 * (`--message`), every connection sends that message alone: a server that
 * mixes connections up is then not told apart, the price of the user's bytes.
 */
export class Pattern {
  /** Bytes per message. */
  readonly size: number;
  /** Distance between slot starts: `size` rounded up to 8. */
  readonly stride: number;
  /** Number of distinct messages. */
  readonly slots: number;
  /** The slots, end to end. */
  readonly bytes: Uint8Array;
  /** The same memory as 32-bit words, for fast comparison. */
  readonly words: Int32Array;
  /** One view per slot, made once so sending allocates nothing. */
  readonly views: Uint8Array[];

  constructor(size: number, connections: number, message?: Uint8Array) {
    this.size = message?.length ?? size;
    this.stride = Math.ceil(this.size / 8) * 8;
    const wanted = Math.max(connections, 64);
    this.slots = message !== undefined ? 1 : Math.max(
      2,
      Math.min(wanted, Math.floor(PATTERN_BUDGET / this.stride)),
    );
    this.bytes = new Uint8Array(this.slots * this.stride);
    this.words = new Int32Array(this.bytes.buffer);
    // A fixed seed: reproducible, and no two slots alike.
    if (message === undefined) fillXorshift32(this.words, 0x9e3779b9);
    else this.bytes.set(message);
    this.views = [];
    for (let s = 0; s < this.slots; s++) {
      this.views.push(
        this.bytes.subarray(s * this.stride, s * this.stride + this.size),
      );
    }
  }
}

/**
 * Counts the bytes of `got[gi .. gi+len)` that differ from
 * `want[wi .. wi+len)`, four at a time where both offsets share an alignment.
 */
export function countMismatches(
  got: Uint8Array,
  got32: Int32Array,
  gi: number,
  want: Uint8Array,
  want32: Int32Array,
  wi: number,
  len: number,
): number {
  let bad = 0;
  const end = gi + len;
  if (((gi ^ wi) & 3) === 0) {
    while (gi < end && (gi & 3) !== 0) {
      if (got[gi++] !== want[wi++]) bad++;
    }
    const wordEnd = end >> 2;
    let g = gi >> 2;
    let w = wi >> 2;
    if ((gi & 3) === 0 && g < wordEnd) {
      for (; g < wordEnd; g++, w++) {
        if (got32[g] !== want32[w]) {
          for (let b = g << 2, c = w << 2, e = b + 4; b < e; b++, c++) {
            if (got[b] !== want[c]) bad++;
          }
        }
      }
      gi = g << 2;
      wi = w << 2;
    }
  }
  while (gi < end) {
    if (got[gi++] !== want[wi++]) bad++;
  }
  return bad;
}

/**
 * The bytes of `--message TEXT`: UTF-8, with tcpkali's escapes `\n`, `\r`,
 * `\t`, `\0`, `\\` and `\xHH` for any byte.
 *
 * @throws {RangeError} On an unknown escape or an unfinished `\x`.
 */
export function decodeMessage(text: string): Uint8Array {
  const out: number[] = [];
  const encoder = new TextEncoder();
  const simple: Record<string, number> = {
    n: 10,
    r: 13,
    t: 9,
    "0": 0,
    "\\": 92,
  };
  let plain = "";
  const flush = () => {
    for (const b of encoder.encode(plain)) out.push(b);
    plain = "";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== "\\") {
      plain += c;
      continue;
    }
    flush();
    const e = text[i + 1];
    if (e !== undefined && e in simple) {
      out.push(simple[e]!);
      i++;
    } else if (e === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      out.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      throw new RangeError(
        `Cannot read the escape "\\${
          e ?? ""
        }" in "${text}": expected \\n, \\r, \\t, \\0, \\\\ or \\xHH`,
      );
    }
  }
  flush();
  return new Uint8Array(out);
}
