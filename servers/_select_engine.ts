/**
 * The notes' select loop as an engine of the shared echo core: each
 * connection (the notes' `struct Connection`) has a ring buffer from a pool
 * whose size follows the policy of `_select_buffers.ts`, and one loop over
 * a {@linkcode Selector} reads into a buffer only while it has room and
 * writes only while it holds data. `select_echo.ts` starts it.
 *
 * @module
 */

import {
  type EchoCore,
  type EchoEngine,
  isClosed,
  type Session,
} from "./_echo.ts";
import { AdaptiveSize } from "./_select_buffers.ts";
import { BufferPool } from "./_buffer_pool.ts";
import { type SelectionKey, Selector } from "./_select_selector.ts";

/** The buffer draining connections read into, after their FIN, to drop. */
const DISCARD_SIZE = 64 * 1024;

/**
 * The notes' `struct Connection`: the socket and its buffer. The buffer is
 * a ring: held bytes run from `start` for `held` bytes, wrapping at the end.
 * Its size adapts (see `#setupFDSets`); it comes from the engine's pool.
 */
class Connection {
  /** The core's session (connection, id, idle clock). */
  readonly session: Session;
  /** The notes' `acBuffer`, from the pool; replaced when its size changes. */
  buffer: Uint8Array;
  /** Its state in the engine's {@linkcode AdaptiveSize} policy. */
  sizeState = 0;
  /** Room the armed (or last) read was given. */
  asked = 0;
  /** The last read filled its room: more is likely waiting in the socket. */
  filled = false;
  /** Where this connection sits in the selector. */
  readonly key: SelectionKey<Connection>;
  /** Index of the oldest held byte. */
  start = 0;
  /** The notes' `nCharsInBuffer`: bytes read and not yet written back. */
  held = 0;
  /** The peer shut down its sending side (recv returned 0). */
  shut = false;
  /** At the stop its read had landed, not yet reported: owed an echo. */
  landedAtStop = false;
  /**
   * Draining, everything read has been written back and our FIN sent: what
   * still arrives is read and dropped until the peer closes.
   */
  finishing = false;
  /** ShutdownConnection done. */
  closed = false;

  constructor(
    session: Session,
    selector: Selector<Connection>,
    buffer: Uint8Array,
  ) {
    this.session = session;
    this.buffer = buffer;
    this.key = selector.register(session.conn, this);
  }
}

/** The notes' select loop as an {@linkcode EchoEngine} of the shared core. */
export class SelectEngine implements EchoEngine {
  #core: EchoCore;
  #selector = new Selector<Connection>();
  #min: number;
  #sizing: AdaptiveSize;
  #pool = new BufferPool();
  #connections = new Map<Session, Connection>(); // the notes' gConnections
  #draining = false;
  #drainDue = false; // drain() was called; the loop's next pass starts it
  #discard: Uint8Array | undefined = undefined; // what finishing reads drop
  #loop: Promise<void>;

  /**
   * An engine whose connections' buffers run from `min` to `max` bytes
   * (checked by the caller), starting its loop at once.
   */
  constructor(core: EchoCore, min: number, max: number) {
    this.#core = core;
    this.#min = min;
    this.#sizing = new AdaptiveSize(min, max);
    core.stats.bytesHeld = 0;
    core.stats.peakHeld = 0;
    core.stats.bufferBytes = 0;
    core.stats.peakBuffer = 0;
    this.#loop = this.#acceptConnections();
  }

  open(session: Session): void {
    // gConnections.push_back(Connection(sd)); the next pass of SetupFDSets.
    const c = new Connection(
      session,
      this.#selector,
      this.#pool.take(this.#min),
    );
    const stats = this.#core.stats;
    stats.bufferBytes! += this.#min;
    if (this.#min > stats.peakBuffer!) stats.peakBuffer = this.#min;
    this.#connections.set(session, c);
    this.#setupFDSets(c);
  }

  close(session: Session): void {
    const c = this.#connections.get(session);
    if (c) this.#shutdownConnection(c);
  }

  drain(): void {
    // The loop does it, between two batches: from here, a batch that
    // select() has delivered and the loop not yet processed would look idle
    // (its reports taken, nothing armed), and be finished or written twice.
    this.#drainDue = true;
    this.#discard = new Uint8Array(DISCARD_SIZE);
    this.#selector.wakeup();
  }

  held(session: Session): number {
    return this.#connections.get(session)?.held ?? 0;
  }

  async stop(): Promise<void> {
    this.#selector.close();
    await this.#loop;
  }

  /** AcceptConnections: the notes' loop around select(). */
  async #acceptConnections(): Promise<void> {
    const selector = this.#selector;
    while (!selector.closed) {
      // select(0, &ReadFDs, &WriteFDs, &ExceptFDs, 0)
      const batch = await selector.select();
      for (let i = 0; i < batch.length; i++) {
        const key = batch[i]!;
        const c = key.attachment;
        if (c.closed) continue;
        try {
          if (key.readable && !this.#readData(c, key)) continue;
          if (key.writable && !this.#writeData(c, key)) continue;
          this.#setupFDSets(c);
        } catch (error) {
          // A bug must cost one connection, never the loop.
          this.#shutdownConnection(c, error);
        }
      }
      if (this.#drainDue) this.#startDrain();
    }
  }

  /**
   * The drain, once, between batches: a connection whose read has landed
   * (a report pending for the next batch) was read before the stop and is
   * echoed by the loop first; the rest have nothing left to write back and
   * finish now.
   */
  #startDrain(): void {
    this.#drainDue = false;
    this.#draining = true;
    for (const c of this.#connections.values()) {
      c.landedAtStop = c.key.readLanded;
      if (!c.key.pending) this.#setupFDSets(c);
    }
  }

  /**
   * SetupFDSets, for one connection: ReadFDs while the buffer has room,
   * WriteFDs while it holds data. A connection with nothing left to send
   * is closed once its peer has shut down, or finished while draining.
   *
   * The buffer's size adapts: after a read that filled its room (more is
   * waiting) the next one gets the size Netty's rule gives; after one that
   * did not, the connection may wait long for its next bytes, so it waits
   * in the smallest buffer and a quiet connection holds no large one. A
   * new size is taken when no read or write uses the buffer: until then
   * no read is armed, and the write in flight empties the buffer.
   */
  #setupFDSets(c: Connection): void {
    const key = c.key;
    if (!c.shut && !this.#draining && !key.readArmed) {
      const want = c.filled ? this.#sizing.size(c.sizeState) : this.#min;
      if (want !== c.buffer.length && !key.writeArmed && c.held <= want) {
        this.#resize(c, want);
      }
      const size = c.buffer.length;
      if (want === size && c.held < size) {
        // if (it->nCharsInBuffer < kBufferSize) FD_SET(it->sd, &ReadFDs);
        // An empty buffer starts over at 0, so the read gets all of it.
        if (c.held === 0) c.start = 0;
        const end = c.start + c.held;
        const room = end === 0
          ? c.buffer
          : end < size
          ? c.buffer.subarray(end)
          : c.buffer.subarray(end - size, c.start);
        c.asked = room.length;
        key.setRead(room);
      }
    }
    const size = c.buffer.length;
    if (c.held > 0 && !key.writeArmed) {
      // if (it->nCharsInBuffer > 0) FD_SET(it->sd, &WriteFDs);
      // The held bytes up to the end of the array; a wrapped rest goes next.
      const length = Math.min(c.held, size - c.start);
      key.setWrite(
        length === size
          ? c.buffer
          : c.buffer.subarray(c.start, c.start + length),
      );
    }
    if (c.held === 0 && !key.writeArmed) {
      if (c.shut) this.#shutdownConnection(c);
      else if (this.#draining) this.#finish(c);
    }
  }

  /** Moves `c` to a pooled buffer of `size` bytes, its held bytes first. */
  #resize(c: Connection, size: number): void {
    const old = c.buffer;
    const next = this.#pool.take(size);
    if (c.held > 0) {
      const first = Math.min(c.held, old.length - c.start);
      next.set(old.subarray(c.start, c.start + first));
      if (first < c.held) next.set(old.subarray(0, c.held - first), first);
    }
    c.start = 0;
    c.buffer = next;
    this.#pool.give(old);
    const stats = this.#core.stats;
    stats.bufferBytes! += size - old.length;
    if (size > stats.peakBuffer!) stats.peakBuffer = size;
  }

  /**
   * Ends a connection whose peer is still sending, once all it was owed has
   * been written: closing at once with unread input makes the kernel send
   * RST, and a RST can destroy echoed bytes the peer has not read yet. So
   * send FIN, drop what still arrives, and close at the peer's close (or at
   * the end of the grace period).
   */
  #finish(c: Connection): void {
    if (!c.finishing) {
      c.finishing = true;
      c.session.conn.closeWrite().catch(() => {
        // The peer is gone already; the read below sees it.
      });
    }
    // One large buffer for every finishing connection: what lands there is
    // dropped, so reads may share it, and a client that keeps sending is
    // drained in few reads rather than --buffer bytes at a time.
    if (!c.key.readArmed) c.key.setRead(this.#discard!);
  }

  /**
   * ReadData: the read has landed in the buffer; count it. Returns false if
   * the connection was closed.
   */
  #readData(c: Connection, key: SelectionKey<Connection>): boolean {
    if (c.finishing) {
      // Dropped: the peer's close, even by reset, ends it quietly.
      if (key.readError === undefined && key.bytesRead !== null) return true;
      this.#shutdownConnection(c);
      return false;
    }
    if (key.readError !== undefined) {
      this.#shutdownConnection(c, key.readError);
      return false;
    }
    const n = key.bytesRead;
    if (n === null) {
      // "Socket was closed by the client. Shutting down." The notes close
      // here; a half-close still wants every byte it sent back, so the
      // close waits until the buffer is empty.
      c.shut = true;
      if (this.#core.verbose) {
        this.#core.log(
          `connection ${c.session.id} from ${c.session.remote} shut down sending; echoing ${c.held} held bytes`,
        );
      }
      return true;
    }
    c.held += n;
    c.filled = n >= c.asked;
    c.sizeState = this.#sizing.record(c.sizeState, n, c.asked);
    const stats = this.#core.stats;
    // Once draining, only a read that had landed before the stop counts.
    if (!this.#draining) {
      stats.bytesRead += n;
    } else if (c.landedAtStop) {
      stats.bytesRead += n;
      c.landedAtStop = false;
    }
    stats.bytesHeld! += n;
    if (c.held > stats.peakHeld!) stats.peakHeld = c.held;
    // Full: no read until a write makes room; a moment `until` can wait for.
    if (c.held === c.buffer.length) this.#core.watch.changed();
    c.session.active = true;
    return true;
  }

  /**
   * WriteData: the write went out, perhaps in part. The notes `memmove`
   * the rest to the front; a ring just moves its start.
   */
  #writeData(c: Connection, key: SelectionKey<Connection>): boolean {
    if (key.writeError !== undefined) {
      this.#shutdownConnection(c, key.writeError);
      return false;
    }
    const n = key.bytesWritten;
    c.held -= n;
    c.start += n;
    if (c.start >= c.buffer.length) c.start -= c.buffer.length;
    const stats = this.#core.stats;
    stats.bytesHeld! -= n;
    stats.bytesEchoed += n;
    c.session.active = true;
    return true;
  }

  /** ShutdownConnection(it->sd); gConnections.erase(it). */
  #shutdownConnection(c: Connection, error?: unknown): void {
    if (c.closed) return;
    c.closed = true;
    c.key.cancel();
    this.#connections.delete(c.session);
    this.#core.stats.bytesHeld! -= c.held;
    this.#core.stats.bufferBytes! -= c.buffer.length;
    // A read or write still in flight may write into the buffer or send
    // from it until the close ends it: such a buffer is not reused.
    if (c.key.readArmed || c.key.writeArmed) this.#pool.drop(c.buffer);
    else this.#pool.give(c.buffer);
    try {
      c.session.conn.close();
    } catch {
      // Already closed by the runtime.
    }
    const quiet = error === undefined || isClosed(error);
    this.#core.end(c.session, quiet ? undefined : error);
  }
}
