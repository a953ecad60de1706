/**
 * The select echo server's buffers: how big a connection's next read is
 * (Netty's AdaptiveRecvByteBufAllocator, as a pure policy). The buffers
 * come from `_buffer_pool.ts`, so that a connection that streamed and went
 * quiet hands its large buffer back for the next one to use.
 *
 * @module
 */

/** Default smallest buffer: the notes' `kBufferSize`. */
export const DEFAULT_MIN_BUFFER = 1024;
/**
 * Default largest buffer, Netty's default maximum. It is the most bytes one
 * connection makes the server hold (a client that sends and never reads
 * stops being read once its buffer is full), so 10,000 connections
 * streaming at once pin at most 640 MiB; a larger read gains little, since a
 * read over loopback rarely brings more than 64 KiB.
 */
export const DEFAULT_MAX_BUFFER = 64 * 1024;
/**
 * Table steps a read that fills its buffer moves up: 4, as Netty's
 * `INDEX_INCREMENT`, so 1 KiB grows to 16 KiB and then to 64 KiB.
 */
export const GROW_STEPS = 4;

/**
 * The sizes a buffer may take from `min` to `max`: `min`, every power of
 * two between them, and `max`.
 *
 * @throws {RangeError} If `min` is below 1 or above `max`.
 */
export function sizeTable(min: number, max: number): number[] {
  if (!(min >= 1 && min <= max)) {
    throw new RangeError(
      `Cannot make a size table from ${min} to ${max}: expected 1 <= min <= max`,
    );
  }
  const sizes = [min];
  let p = 1;
  while (p <= min) p *= 2;
  for (; p < max; p *= 2) sizes.push(p);
  if (max > min) sizes.push(max);
  return sizes;
}

/**
 * Netty's adaptive read size as a policy over one table of sizes, shared by
 * every connection of a server; each connection keeps only a small integer
 * of state (its step in the table and Netty's `decreaseNow`), starting at
 * 0, the smallest size. A read that fills the room it was given moves
 * {@linkcode GROW_STEPS} steps up the table at once; a read that brings no
 * more than the size one step down counts as small, and the second small
 * read in a row moves one step down. A read in between changes nothing.
 *
 * @example
 * ```ts
 * import { AdaptiveSize } from "./_select_buffers.ts";
 * const policy = new AdaptiveSize(1024, 65536);
 * let state = 0;
 * state = policy.record(state, 1024, 1024); // filled: 1 KiB -> 16 KiB
 * console.log(policy.size(state)); // 16384
 * state = policy.record(state, 10, 16384);
 * state = policy.record(state, 10, 16384); // the second small read
 * console.log(policy.size(state)); // 8192
 * ```
 */
export class AdaptiveSize {
  /** The table of sizes, smallest first. */
  readonly sizes: readonly number[];

  /** The table from `min` to `max` ({@linkcode sizeTable}). */
  constructor(min: number, max: number) {
    this.sizes = sizeTable(min, max);
  }

  /** The size the next read of a connection in `state` should be given. */
  size(state: number): number {
    return this.sizes[state >> 1]!;
  }

  /**
   * Records one read of a connection in `state`: `bytesRead` of the
   * `attempted` bytes of room it had.
   *
   * @returns The connection's new state.
   */
  record(state: number, bytesRead: number, attempted: number): number {
    const sizes = this.sizes;
    const index = state >> 1;
    if (bytesRead >= attempted && bytesRead > 0) {
      return Math.min(index + GROW_STEPS, sizes.length - 1) << 1;
    }
    if (bytesRead <= sizes[Math.max(0, index - 1)]!) {
      // Netty's decreaseNow: the first small read only arms the step down.
      return (state & 1) === 1 ? Math.max(index - 1, 0) << 1 : state | 1;
    }
    return state;
  }
}
