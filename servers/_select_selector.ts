/**
 * The select server's {@linkcode Selector}: the notes' select() for Deno
 * connections, which tell that they are ready only by finishing a
 * `conn.read` or `conn.write`. Setting a connection in the read set arms one
 * read, in the write set one write; each reports once, and `select()`
 * resolves with the batch of those that did. The echo loop on it is in
 * `_select_engine.ts`; `select_echo.ts` exports it.
 *
 * @module
 */

/**
 * A connection registered with a {@linkcode Selector}: its interest in read
 * and write readiness, and what its last reports said. The report fields
 * are those of the batch `select()` returned last and hold until the next
 * `select()`.
 */
export interface SelectionKey<T> {
  /** The registered connection. */
  readonly conn: Deno.Conn;
  /** What the caller attached at `register`: its per-connection state. */
  readonly attachment: T;
  /** In this batch: the armed read finished (or failed). */
  readonly readable: boolean;
  /** Bytes the read brought; `null` when the peer shut down its sending side. */
  readonly bytesRead: number | null;
  /** Why the read failed (the notes' ExceptFDs), if it did. */
  readonly readError: unknown;
  /** In this batch: the armed write finished (or failed). */
  readonly writable: boolean;
  /** Bytes the write sent: perhaps fewer than asked. */
  readonly bytesWritten: number;
  /** Why the write failed, if it did. */
  readonly writeError: unknown;
  /** A read is armed and its report not yet delivered by `select()`. */
  readonly readArmed: boolean;
  /** A write is armed and its report not yet delivered by `select()`. */
  readonly writeArmed: boolean;
  /** The armed read has finished; its report waits for the next `select()`. */
  readonly readLanded: boolean;
  /** A report waits for the next `select()`. */
  readonly pending: boolean;
  /** Whether `cancel()` was called. */
  readonly cancelled: boolean;
  /**
   * `FD_SET(sd, &ReadFDs)`: arms one read into `into`, unless a read is
   * armed already. Its report says how many bytes landed at the start of
   * `into`, which must stay untouched until then.
   *
   * @returns Whether a read was armed.
   * @throws {RangeError} If `into` is empty.
   */
  setRead(into: Uint8Array): boolean;
  /**
   * `FD_SET(sd, &WriteFDs)`: arms one write of `from`, unless a write is
   * armed already. Its report says how many of the bytes went out; `from`
   * must stay untouched until then.
   *
   * @returns Whether a write was armed.
   * @throws {RangeError} If `from` is empty.
   */
  setWrite(from: Uint8Array): boolean;
  /**
   * Removes the connection from the selector: no report of it is delivered
   * again. Closing the connection stays with the caller; operations still
   * armed end when it is closed.
   */
  cancel(): void;
}

/** The selector's side of a key: the ready list and the counters. */
interface Hub<T> {
  /** Queues `key` for the next batch and wakes the waiting `select()`. */
  report(key: Registration<T>): void;
  /** Armed reads whose promise has not settled. */
  reads: number;
  /** Armed writes whose promise has not settled. */
  writes: number;
  /** Keys not cancelled. */
  registered: number;
}

/** The one implementation of {@linkcode SelectionKey}. */
class Registration<T> implements SelectionKey<T> {
  readonly conn: Deno.Conn;
  readonly attachment: T;
  readable = false;
  bytesRead: number | null = 0;
  readError: unknown = undefined;
  writable = false;
  bytesWritten = 0;
  writeError: unknown = undefined;
  /** On the hub's ready list now. */
  queued = false;
  #hub: Hub<T>;
  #cancelled = false;
  /** A read's promise has not settled. */
  #reading = false;
  /** A write's promise has not settled. */
  #writing = false;
  /** A read settled and its report waits for delivery; with its result. */
  #readDone = false;
  #readResult: number | null = 0;
  #readFailure: unknown = undefined;
  /** A write settled and its report waits for delivery; with its result. */
  #writeDone = false;
  #writeResult = 0;
  #writeFailure: unknown = undefined;
  // Made once per key, so arming an operation allocates no closure.
  readonly #onRead: (n: number | null) => void;
  readonly #onReadFailed: (error: unknown) => void;
  readonly #onWrite: (n: number) => void;
  readonly #onWriteFailed: (error: unknown) => void;

  constructor(hub: Hub<T>, conn: Deno.Conn, attachment: T) {
    this.#hub = hub;
    this.conn = conn;
    this.attachment = attachment;
    this.#onRead = (n) => this.#readSettled(n, undefined);
    this.#onReadFailed = (error) => this.#readSettled(0, error);
    this.#onWrite = (n) => this.#writeSettled(n, undefined);
    this.#onWriteFailed = (error) => this.#writeSettled(0, error);
  }

  get readArmed(): boolean {
    return this.#reading || this.#readDone;
  }

  get writeArmed(): boolean {
    return this.#writing || this.#writeDone;
  }

  get readLanded(): boolean {
    return this.#readDone;
  }

  get pending(): boolean {
    return this.#readDone || this.#writeDone;
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  setRead(into: Uint8Array): boolean {
    if (into.length === 0) {
      throw new RangeError(
        "Cannot arm a read into an empty buffer: give it room for at least 1 byte",
      );
    }
    if (this.#cancelled || this.#reading || this.#readDone) return false;
    this.#reading = true;
    this.#hub.reads++;
    this.conn.read(into).then(this.#onRead, this.#onReadFailed);
    return true;
  }

  setWrite(from: Uint8Array): boolean {
    if (from.length === 0) {
      throw new RangeError(
        "Cannot arm a write of no bytes: give it at least 1 byte",
      );
    }
    if (this.#cancelled || this.#writing || this.#writeDone) return false;
    this.#writing = true;
    this.#hub.writes++;
    this.conn.write(from).then(this.#onWrite, this.#onWriteFailed);
    return true;
  }

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#readDone = false;
    this.#writeDone = false;
    this.#hub.registered--;
  }

  /** Moves the waiting reports into the public fields, for this batch. */
  deliver(): void {
    this.queued = false;
    if (this.#readDone) {
      this.#readDone = false;
      this.readable = true;
      this.bytesRead = this.#readResult;
      this.readError = this.#readFailure;
      this.#readFailure = undefined;
    }
    if (this.#writeDone) {
      this.#writeDone = false;
      this.writable = true;
      this.bytesWritten = this.#writeResult;
      this.writeError = this.#writeFailure;
      this.#writeFailure = undefined;
    }
  }

  /** Forgets the reports of the batch that is over. */
  spend(): void {
    this.readable = false;
    this.readError = undefined;
    this.writable = false;
    this.writeError = undefined;
  }

  #readSettled(n: number | null, error: unknown): void {
    this.#reading = false;
    this.#hub.reads--;
    if (this.#cancelled) return;
    this.#readDone = true;
    this.#readResult = n;
    this.#readFailure = error;
    this.#hub.report(this);
  }

  #writeSettled(n: number, error: unknown): void {
    this.#writing = false;
    this.#hub.writes--;
    if (this.#cancelled) return;
    this.#writeDone = true;
    this.#writeResult = n;
    this.#writeFailure = error;
    this.#hub.report(this);
  }
}

/**
 * The select() of the notes for Deno connections: register connections,
 * set their read and write interest, and `select()` resolves with the batch
 * of those whose armed read or write has finished. Interest is one-shot:
 * an armed operation reports once, then the caller sets it again if it
 * still wants it (as the notes rebuild their fd sets on each pass, but only
 * for the connections that were ready). One loop owns a selector: one
 * `select()` may wait at a time.
 *
 * At most one read and one write are armed per connection, each with a
 * single reaction, so an event costs the same with 10 or 10,000 idle
 * connections registered; {@linkcode Selector.armed} counts them.
 *
 * @typeParam T What the caller attaches to each connection.
 *
 * @example
 * ```ts
 * import { Selector } from "./select_echo.ts";
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * using client = await Deno.connect({ port: listener.addr.port });
 * using server = await listener.accept();
 * using selector = new Selector<string>();
 * const key = selector.register(server, "first");
 * const buffer = new Uint8Array(16);
 * key.setRead(buffer); // FD_SET(sd, &ReadFDs)
 * await client.write(new Uint8Array([1, 2, 3]));
 * const [ready] = await selector.select();
 * console.log(ready!.attachment, ready!.readable, ready!.bytesRead); // first true 3
 * ```
 */
export class Selector<T = unknown> implements Disposable {
  // Two lists swapped on each select(): reports queue on one while the
  // caller walks the other, so a batch allocates no array.
  #ready: Registration<T>[] = [];
  #batch: Registration<T>[] = [];
  #wake: (() => void) | undefined = undefined;
  #waiting = false;
  #closed = false;
  #hub: Hub<T>;

  /** An empty selector. */
  constructor() {
    this.#hub = {
      reads: 0,
      writes: 0,
      registered: 0,
      report: (key) => {
        if (key.queued) return;
        key.queued = true;
        this.#ready.push(key);
        this.wakeup();
      },
    };
  }

  /** Connections registered and not cancelled. */
  get registered(): number {
    return this.#hub.registered;
  }

  /** Reads armed whose operation has not finished. */
  get armedReads(): number {
    return this.#hub.reads;
  }

  /** Writes armed whose operation has not finished. */
  get armedWrites(): number {
    return this.#hub.writes;
  }

  /**
   * Operations armed and not finished: never more than one read and one
   * write per connection (plus those of cancelled connections until they
   * are closed).
   */
  get armed(): number {
    return this.#hub.reads + this.#hub.writes;
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Adds `conn`, with no interest yet.
   *
   * @param conn The connection; the caller keeps owning it.
   * @param attachment Per-connection state, handed back in each report.
   * @returns The key to set interest on and read reports from.
   * @throws {TypeError} If the selector is closed.
   */
  register(conn: Deno.Conn, attachment: T): SelectionKey<T> {
    if (this.#closed) {
      throw new TypeError(
        "Cannot register with a closed selector: make a new one",
      );
    }
    this.#hub.registered++;
    return new Registration(this.#hub, conn, attachment);
  }

  /**
   * `select()`: waits until at least one armed operation has reported, then
   * resolves with every connection that reported meanwhile, each once with
   * its read and write reports. The array and the reports are valid until
   * the next call. Resolves with an empty batch after `wakeup()` or
   * `close()`.
   *
   * @throws {TypeError} If another `select()` is waiting.
   */
  async select(): Promise<readonly SelectionKey<T>[]> {
    if (this.#waiting) {
      throw new TypeError(
        "Cannot select() while another select() waits: one loop owns a selector",
      );
    }
    const batch = this.#batch;
    for (let i = 0; i < batch.length; i++) batch[i]!.spend();
    batch.length = 0;
    if (this.#ready.length === 0 && !this.#closed) {
      this.#waiting = true;
      // Reports that land in the same turn of the event loop queue up
      // before this resumes, so they come back as one batch.
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#waiting = false;
    }
    if (this.#closed) return batch;
    this.#batch = this.#ready;
    this.#ready = batch;
    let kept = 0;
    const taken = this.#batch;
    for (let i = 0; i < taken.length; i++) {
      const key = taken[i]!;
      if (key.cancelled) {
        key.queued = false;
        continue;
      }
      key.deliver();
      taken[kept++] = key;
    }
    taken.length = kept;
    return taken;
  }

  /** Makes a waiting `select()` resolve now, with what is ready (maybe nothing). */
  wakeup(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /**
   * Closes the selector: a waiting `select()` resolves with an empty batch,
   * as does every later one. The connections are left to their owners.
   */
  close(): void {
    this.#closed = true;
    this.wakeup();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
