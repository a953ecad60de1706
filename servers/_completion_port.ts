/**
 * The completion port the notes' I/O completion port echo server runs on:
 * {@linkcode CompletionPort} (CreateIoCompletionPort,
 * GetQueuedCompletionStatus, PostQueuedCompletionStatus),
 * {@linkcode PortWorker} (one of the notes' worker loops) and
 * {@linkcode PortSocket} (a connection associated with the port, with
 * overlapped WSARecv and WSASend). Nothing here knows about echo: the
 * engine on top is in `_completion_engine.ts`.
 *
 * @module
 */

/** The four operations of the notes' echo scenario. */
export type IoOperation =
  | "IO_Read_Request"
  | "IO_Read_Completed"
  | "IO_Write_Request"
  | "IO_Write_Completed";

/**
 * One entry of a completion port's queue: the notes' `completionKey`,
 * `pOverlapped` (which operation) and `dwNumBytes`. A caller owns its
 * records and may reuse one once the port has handed it back: the echo
 * server keeps one for reads and one for writes per connection, so a
 * message allocates no record.
 */
export interface Completion<K, O extends string = IoOperation> {
  /** The completion key: the per-connection context given to `associate`. */
  key: K;
  /** What happened or what to do next. */
  operation: O;
  /** Bytes transferred; for a read, 0 means the peer shut down its side. */
  bytes: number;
  /** Set when the overlapped `recv`/`send` failed (reset, closed). */
  error?: unknown;
}

/**
 * What `get()` resolves with once the port is closed: the notes' worker
 * thread sees `GetQueuedCompletionStatus` fail and exits its loop.
 */
export const PORT_CLOSED: unique symbol = Symbol("PORT_CLOSED");

/** A waiting `get()`: who asked, and how to wake it. */
interface Waiter<K, O extends string> {
  /** Wakes the caller with a completion or {@linkcode PORT_CLOSED}. */
  resolve: (value: Completion<K, O> | typeof PORT_CLOSED) => void;
  /** Fails the caller (abort). */
  reject: (reason: unknown) => void;
  /** The caller's signal, if any, to unhook once it is woken. */
  signal: AbortSignal | undefined;
  /** The abort listener installed on `signal`. */
  onAbort: (() => void) | undefined;
  /** The worker handle that asked, which then holds a slot; none for `port.get`. */
  worker: PortWorker<K, O> | undefined;
}

/**
 * A first-in first-out queue that grows but never shifts an array: `shift`
 * on a JavaScript array is O(n), and the port's queue is on the hot path.
 * The capacity stays a power of two, so wrapping is a mask, not a division.
 */
class Fifo<T> {
  #items: (T | undefined)[] = new Array(16);
  #mask = 15; // capacity - 1
  #head = 0; // index of the oldest item
  #size = 0; // items held

  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    if (this.#size === this.#items.length) {
      const grown: (T | undefined)[] = new Array(this.#items.length * 2);
      for (let i = 0; i < this.#size; i++) {
        grown[i] = this.#items[(this.#head + i) & this.#mask];
      }
      this.#items = grown;
      this.#mask = grown.length - 1;
      this.#head = 0;
    }
    this.#items[(this.#head + this.#size) & this.#mask] = item;
    this.#size++;
  }

  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & this.#mask;
    this.#size--;
    return item;
  }

  /** Removes `item` wherever it is (an aborted waiter); O(n), rare. */
  remove(item: T): boolean {
    const mask = this.#mask;
    for (let i = 0; i < this.#size; i++) {
      if (this.#items[(this.#head + i) & mask] !== item) continue;
      for (let j = i; j < this.#size - 1; j++) {
        this.#items[(this.#head + j) & mask] =
          this.#items[(this.#head + j + 1) & mask];
      }
      this.#items[(this.#head + this.#size - 1) & mask] = undefined;
      this.#size--;
      return true;
    }
    return false;
  }
}

/**
 * An I/O completion port: a first-in first-out queue of completions that
 * worker loops wait on, with the notes' `maxConcurrency`. At most
 * `concurrency` completions are being processed at once: one handed out by
 * `get()` counts until `done()` is called for it, or, with a
 * {@linkcode PortWorker}, until that worker asks again. Waiting callers are
 * served in the order they asked; nobody spins or polls.
 *
 * @example
 * ```ts
 * import { CompletionPort, PORT_CLOSED } from "./completion_echo.ts";
 * const port = new CompletionPort<string>(2);
 * port.post({ key: "a", operation: "IO_Read_Request", bytes: 0 });
 * const c = await port.get();
 * if (c !== PORT_CLOSED) console.log(c.key, c.operation); // a IO_Read_Request
 * port.done();
 * port.close();
 * ```
 */
export class CompletionPort<K, O extends string = IoOperation> {
  /** The notes' `maxConcurrency`. */
  readonly concurrency: number;
  #queue = new Fifo<Completion<K, O>>();
  #waiters = new Fifo<Waiter<K, O>>();
  #running = 0; // completions handed out and not yet done
  #closed = false;
  #associated = new WeakSet<Deno.Conn>(); // connections bound to this port

  /**
   * CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, maxConcurrency).
   *
   * @param concurrency Most completions processed at once, at least 1.
   * @throws {RangeError} If `concurrency` is not a whole number of at least 1.
   */
  constructor(concurrency = 1) {
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `Cannot use concurrency "${concurrency}": expected a whole number of at least 1`,
      );
    }
    this.concurrency = concurrency;
  }

  /** Whether `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Completions queued and not yet handed out. */
  get queued(): number {
    return this.#queue.size;
  }

  /** Completions handed out and not yet done. */
  get running(): number {
    return this.#running;
  }

  /** Callers waiting in `get()`. */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * CreateIoCompletionPort(hDevice, m_iocp, completionKey, 0): binds `conn`
   * to this port under `key`. The returned socket is what overlapped I/O is
   * issued on (`recv`, `send`, as WSARecv and WSASend take the socket), and
   * each of its completions is posted here.
   *
   * @throws {TypeError} If `conn` is already associated or the port is closed.
   */
  associate(conn: Deno.Conn, key: K): PortSocket<K, O> {
    if (this.#closed) {
      throw new TypeError(
        "Cannot associate with a closed port: make a new one",
      );
    }
    if (this.#associated.has(conn)) {
      throw new TypeError(
        `Cannot associate a connection twice (key "${
          String(key)
        }"): dissociate it first`,
      );
    }
    this.#associated.add(conn);
    return new PortSocket(this, conn, key);
  }

  /** @internal Used by {@linkcode PortSocket.dissociate}. */
  _dissociate(conn: Deno.Conn): void {
    this.#associated.delete(conn);
  }

  /**
   * PostQueuedCompletionStatus: queues `completion` for the next worker.
   * Returns false, dropping it, once the port is closed (an I/O that ends
   * after shutdown has nobody to tell).
   */
  post(completion: Completion<K, O>): boolean {
    if (this.#closed) return false;
    this.#queue.push(completion);
    this.#dispatch();
    return true;
  }

  /**
   * GetQueuedCompletionStatus(..., INFINITE): resolves with the oldest
   * completion once one is queued and fewer than `concurrency` are being
   * processed; the caller then calls `done()`. Resolves with
   * {@linkcode PORT_CLOSED} once the port is closed; rejects with the
   * signal's reason if `signal` aborts first (the caller then holds nothing).
   */
  get(signal?: AbortSignal): Promise<Completion<K, O> | typeof PORT_CLOSED> {
    return this.#get(signal, undefined);
  }

  /**
   * GetQueuedCompletionStatus with a timeout of 0: the oldest completion if
   * one can be handed out now, else `undefined`. Never waits.
   */
  tryGet(): Completion<K, O> | typeof PORT_CLOSED | undefined {
    return this.#tryGet(undefined);
  }

  /**
   * Ends the processing of one completion handed out by `get()` or
   * `tryGet()`, making room for the next under `concurrency`.
   *
   * @throws {RangeError} If no completion is being processed.
   */
  done(): void {
    if (this.#running === 0) {
      throw new RangeError("Cannot call done(): no completion is in progress");
    }
    this.#running--;
    this.#dispatch();
  }

  /**
   * A worker handle: its `get()` first ends the processing of the
   * completion it was handed last, as a worker thread of the notes does by
   * calling GetQueuedCompletionStatus again.
   */
  worker(): PortWorker<K, O> {
    return new PortWorker(this);
  }

  /**
   * Closes the port: queued completions are dropped, every waiting caller
   * (in order) resolves with {@linkcode PORT_CLOSED}, and so does every later
   * `get()`. Associated connections are left to their owners. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#queue.shift() !== undefined) {
      // Dropped: nobody will process them.
    }
    for (let w = this.#waiters.shift(); w; w = this.#waiters.shift()) {
      w.signal?.removeEventListener("abort", w.onAbort!);
      w.resolve(PORT_CLOSED);
    }
  }

  /** Shared by `get` and `PortWorker.get`. */
  #get(
    signal: AbortSignal | undefined,
    worker: PortWorker<K, O> | undefined,
  ): Promise<Completion<K, O> | typeof PORT_CLOSED> {
    if (this.#closed) return Promise.resolve(PORT_CLOSED);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const ready = this.#tryGet(worker);
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const waiter: Waiter<K, O> = {
        resolve,
        reject,
        signal,
        onAbort: undefined,
        worker,
      };
      if (signal) {
        waiter.onAbort = () => {
          this.#waiters.remove(waiter);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
    });
  }

  /** Hands out a completion now if the order and the limit allow it. */
  #tryGet(
    worker: PortWorker<K, O> | undefined,
  ): Completion<K, O> | typeof PORT_CLOSED | undefined {
    if (this.#closed) return PORT_CLOSED;
    // Someone asked earlier: they go first, so this caller must queue.
    if (this.#waiters.size > 0) return undefined;
    if (this.#running >= this.concurrency) return undefined;
    const completion = this.#queue.shift();
    if (completion === undefined) return undefined;
    this.#running++;
    if (worker) worker._holding = true;
    return completion;
  }

  /** Wakes waiters, oldest first, while completions and room remain. */
  #dispatch(): void {
    while (
      this.#waiters.size > 0 && this.#queue.size > 0 &&
      this.#running < this.concurrency
    ) {
      const waiter = this.#waiters.shift()!;
      const completion = this.#queue.shift()!;
      this.#running++;
      if (waiter.worker) waiter.worker._holding = true;
      waiter.signal?.removeEventListener("abort", waiter.onAbort!);
      waiter.resolve(completion);
    }
  }

  /** @internal Used by {@linkcode PortWorker}. */
  _get(
    signal: AbortSignal | undefined,
    worker: PortWorker<K, O>,
  ): Promise<Completion<K, O> | typeof PORT_CLOSED> {
    return this.#get(signal, worker);
  }

  /** @internal Used by {@linkcode PortWorker}. */
  _tryGet(
    worker: PortWorker<K, O>,
  ): Completion<K, O> | typeof PORT_CLOSED | undefined {
    return this.#tryGet(worker);
  }
}

/**
 * One worker of a {@linkcode CompletionPort}, the notes' `Work1`/`Work2`:
 * the completion it was handed last counts as being processed until it asks
 * again (or calls `done()`, or is disposed).
 *
 * @example
 * ```ts
 * import { CompletionPort, PORT_CLOSED } from "./completion_echo.ts";
 * const port = new CompletionPort<number>(1);
 * using worker = port.worker();
 * port.post({ key: 1, operation: "IO_Read_Request", bytes: 0 });
 * port.close();
 * console.log(await worker.get() === PORT_CLOSED); // true
 * ```
 */
export class PortWorker<K, O extends string = IoOperation>
  implements Disposable {
  #port: CompletionPort<K, O>;
  /** @internal Whether this worker holds a slot of the port's concurrency. */
  _holding = false;

  /** A worker of `port`; prefer `port.worker()`. */
  constructor(port: CompletionPort<K, O>) {
    this.#port = port;
  }

  /**
   * Ends the processing of the last completion, then waits for the next one
   * as `CompletionPort.get` does.
   */
  get(signal?: AbortSignal): Promise<Completion<K, O> | typeof PORT_CLOSED> {
    this.done();
    return this.#port._get(signal, this);
  }

  /** Ends the processing of the last completion, then takes one if ready. */
  tryGet(): Completion<K, O> | typeof PORT_CLOSED | undefined {
    this.done();
    return this.#port._tryGet(this);
  }

  /** Ends the processing of the last completion, if it holds one. */
  done(): void {
    if (!this._holding) return;
    this._holding = false;
    this.#port.done();
  }

  /** Same as `done()`. */
  [Symbol.dispose](): void {
    this.done();
  }
}

/**
 * A connection associated with a {@linkcode CompletionPort}, as
 * `port.associate(conn, key)` returns it: overlapped reads and writes are
 * issued on it, and their completions are posted to the port. At most one
 * read and one write are in flight on a socket at a time; the promise
 * reactions are made once per completion record, so a message allocates no
 * closure.
 *
 * @example
 * ```ts ignore
 * import { CompletionPort } from "./completion_echo.ts";
 * const port = new CompletionPort<string>(1);
 * const socket = port.associate(conn, "client 1");
 * const read = { key: "client 1", operation: "IO_Read_Completed", bytes: 0 };
 * socket.recv(read, new Uint8Array(1024));
 * const done = await port.get(); // read, with its bytes set
 * ```
 */
export class PortSocket<K, O extends string = IoOperation> {
  /** The associated connection. */
  readonly conn: Deno.Conn;
  /** The completion key given to `associate`. */
  readonly key: K;
  #port: CompletionPort<K, O>;
  #associated = true;
  #receiving = false; // a recv is issued and its completion not yet posted
  /** The completion the read reactions post, and the reactions. */
  #recvFor: Completion<K, O> | undefined = undefined;
  #onRecv: (n: number | null) => void = noop;
  #onRecvFail: (error: unknown) => void = noop;
  /** The completion the write reactions post, the reactions, the bytes. */
  #sendFor: Completion<K, O> | undefined = undefined;
  #onSend: (n: number) => void = noop;
  #onSendFail: (error: unknown) => void = noop;
  #sendBytes: Uint8Array | undefined = undefined;
  #sendLength = 0;
  /** The last view made for a send, and of what: messages of one size repeat. */
  #view: Uint8Array | undefined = undefined;
  #viewOf: Uint8Array | undefined = undefined;

  /** Made by {@linkcode CompletionPort.associate}. */
  constructor(port: CompletionPort<K, O>, conn: Deno.Conn, key: K) {
    this.#port = port;
    this.conn = conn;
    this.key = key;
  }

  /**
   * WSARecv, overlapped: reads into `buffer`, then sets `completion.bytes`
   * (0 at the peer's end of stream) or `completion.error` and posts
   * `completion` as it is (the caller has set its operation, as
   * IO_Read_Completed).
   *
   * @throws {TypeError} If the socket was dissociated or `completion` has
   * another key.
   */
  recv(completion: Completion<K, O>, buffer: Uint8Array): void {
    if (completion !== this.#recvFor) this.#bindRecv(completion);
    this.#receiving = true;
    this.conn.read(buffer).then(this.#onRecv, this.#onRecvFail);
  }

  /**
   * Whether a `recv` is still pending in the kernel: issued, and its
   * completion not yet posted. False once the read has landed, even while
   * its completion waits in the port's queue for a worker.
   */
  get receiving(): boolean {
    return this.#receiving;
  }

  /**
   * WSASend, overlapped: writes the first `length` bytes of `bytes`, all of
   * them (a partial write is continued), then sets `completion.bytes` to the
   * count written or `completion.error`, and posts `completion`.
   *
   * @throws {TypeError} If the socket was dissociated or `completion` has
   * another key.
   */
  send(completion: Completion<K, O>, bytes: Uint8Array, length: number): void {
    if (completion !== this.#sendFor) this.#bindSend(completion);
    this.#sendBytes = bytes;
    this.#sendLength = length;
    this.conn.write(this.#prefix(bytes, length))
      .then(this.#onSend, this.#onSendFail);
  }

  /**
   * Ends the association (closesocket does this in Win32) and returns the
   * connection, which the caller closes. I/O in flight still completes.
   */
  dissociate(): Deno.Conn {
    if (this.#associated) {
      this.#associated = false;
      this.#recvFor = this.#sendFor = undefined;
      this.#port._dissociate(this.conn);
    }
    return this.conn;
  }

  /** The first `length` bytes of `bytes`, without a new view each time. */
  #prefix(bytes: Uint8Array, length: number): Uint8Array {
    if (length === bytes.length) return bytes;
    if (bytes !== this.#viewOf || length !== this.#view!.length) {
      this.#viewOf = bytes;
      this.#view = bytes.subarray(0, length);
    }
    return this.#view!;
  }

  #check(completion: Completion<K, O>): void {
    if (!this.#associated) {
      throw new TypeError(
        `Cannot do I/O on key "${String(this.key)}": it was dissociated`,
      );
    }
    if (completion.key !== this.key) {
      throw new TypeError(
        `Cannot post a completion of key "${
          String(completion.key)
        }" for the socket of key "${String(this.key)}"`,
      );
    }
  }

  #bindRecv(completion: Completion<K, O>): void {
    this.#check(completion);
    const port = this.#port;
    this.#recvFor = completion;
    this.#onRecv = (n) => {
      this.#receiving = false;
      completion.bytes = n ?? 0;
      completion.error = undefined;
      port.post(completion);
    };
    this.#onRecvFail = (error) => {
      this.#receiving = false;
      completion.bytes = 0;
      completion.error = error;
      port.post(completion);
    };
  }

  #bindSend(completion: Completion<K, O>): void {
    this.#check(completion);
    const port = this.#port;
    this.#sendFor = completion;
    this.#onSend = (written) => {
      if (written >= this.#sendLength) {
        this.#sendBytes = undefined;
        completion.bytes = written;
        completion.error = undefined;
        port.post(completion);
      } else {
        // A partial write: the rest is rare enough for an async loop.
        sendRest(
          port,
          this.conn,
          completion,
          this.#sendBytes!,
          written,
          this.#sendLength,
        );
        this.#sendBytes = undefined;
      }
    };
    this.#onSendFail = (error) => {
      this.#sendBytes = undefined;
      completion.bytes = 0;
      completion.error = error;
      port.post(completion);
    };
  }
}

function noop(): void {}

/** The rest of a WSASend after a partial write; then posts the completion. */
async function sendRest<K, O extends string>(
  port: CompletionPort<K, O>,
  conn: Deno.Conn,
  completion: Completion<K, O>,
  bytes: Uint8Array,
  written: number,
  length: number,
): Promise<void> {
  try {
    while (written < length) {
      written += await conn.write(bytes.subarray(written, length));
    }
    completion.error = undefined;
  } catch (error) {
    completion.error = error;
  }
  completion.bytes = written;
  port.post(completion);
}
