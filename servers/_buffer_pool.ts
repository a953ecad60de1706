/**
 * The echo servers' pool of read buffers (the select and the completion
 * engines): a buffer a connection no longer needs goes back for the next
 * connection to use, instead of to the garbage collector.
 *
 * @module
 */

/**
 * Free buffers by size, reused by every connection of one server. It keeps
 * up to `keepBytes` of each size; what is given back past that is left to
 * the garbage collector.
 */
export class BufferPool {
  #free = new Map<number, Uint8Array[]>();
  #keep: number;
  /** Bytes of the buffers handed out and not given back. */
  inUse = 0;

  /** A pool that keeps up to `keepBytes` of free buffers of each size. */
  constructor(keepBytes = 1024 * 1024) {
    this.#keep = keepBytes;
  }

  /** A buffer of `size` bytes: a free one if there is one. */
  take(size: number): Uint8Array {
    this.inUse += size;
    return this.#free.get(size)?.pop() ?? new Uint8Array(size);
  }

  /**
   * Gives `buffer` back. No read or write may still be using it.
   * `inUse` drops either way.
   */
  give(buffer: Uint8Array): void {
    const size = buffer.length;
    this.inUse -= size;
    let list = this.#free.get(size);
    if (list === undefined) this.#free.set(size, list = []);
    if ((list.length + 1) * size <= this.#keep) list.push(buffer);
  }

  /** Forgets a buffer that is not given back (an operation may still use it). */
  drop(buffer: Uint8Array): void {
    this.inUse -= buffer.length;
  }

  /** Bytes in free buffers now. */
  get freeBytes(): number {
    let n = 0;
    for (const [size, list] of this.#free) n += size * list.length;
    return n;
  }
}
