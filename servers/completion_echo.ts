#!/usr/bin/env -S deno run --unstable-net --v8-flags=--max-semi-space-size=4 --allow-net
/**
 * The notes' "I/O Completion Ports" echo server: a completion port, worker
 * loops that take completions from it, and the notes' state machine
 * (IO_Read_Request, IO_Read_Completed, IO_Write_Request, IO_Write_Completed)
 * with its shutdown rule.
 *
 * How the Win32 calls of the notes map onto this module:
 *
 * | notes (Win32)                                          | here                                   |
 * | ------------------------------------------------------ | -------------------------------------- |
 * | `CreateIoCompletionPort(INVALID_HANDLE_VALUE, .., maxConcurrency)` | `new CompletionPort(maxConcurrency)` |
 * | `CreateIoCompletionPort(hDevice, m_iocp, completionKey, 0)` | `socket = port.associate(conn, key)` |
 * | `GetQueuedCompletionStatus(m_iocp, .., INFINITE)`      | `await port.get(signal)` / `worker.get(signal)` |
 * | `PostQueuedCompletionStatus(m_iocp, bytes, key, ovl)`  | `port.post(completion)`                |
 * | `WSARecv` (overlapped; completion queued to the port)  | `socket.recv(completion, buffer)`      |
 * | `WSASend` (overlapped; completion queued to the port)  | `socket.send(completion, bytes, length)` |
 * | `shutdown(m_socket, SD_RECEIVE)`                       | stop issuing reads (Deno has no `shutdown(SHUT_RD)`) |
 * | `shutdown(m_socket, SD_SEND)` + `closesocket`          | `socket.dissociate().close()`          |
 * | `CloseHandle(m_iocp)`                                  | `port.close()`: every waiting worker gets {@linkcode PORT_CLOSED} |
 * | the `OVERLAPPED` per I/O and `dwNumBytes`              | a {@linkcode Completion} record, reused per connection, and its `bytes` |
 *
 * The workers are async loops on one JavaScript thread, so "being processed"
 * means from `get()` until the worker asks again; with `--threads T` the
 * whole server runs T times in Web Workers that share the port through
 * SO_REUSEPORT, which is where the parallelism of the notes' worker threads
 * comes from.
 *
 * @example
 * ```ts ignore
 * import { serveCompletionEcho } from "./completion_echo.ts";
 * await using server = await serveCompletionEcho({ port: 0, workers: 2 });
 * console.log(`listening on ${server.addr.port}`);
 * ```
 *
 * @module
 */

import {
  CliError,
  NOTES_PORT,
  parseInteger,
  runMain,
  UsageError,
} from "../_cli.ts";
import { type Addr, listen, listenEndpoint } from "../_net.ts";
import {
  ECHO_OPTIONS,
  type EchoCore,
  type EchoEngine,
  type EchoServer,
  echoServerMain,
  type EchoServerOptions,
  type EchoStats,
  isClosed,
  manyConnectionsHelp,
  parseEchoOptions,
  runEchoServer,
  type Session,
  StatsWatch,
  sumStats,
} from "./_echo.ts";

// ---------------------------------------------------------------------------
// The completion port
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The echo server on the port
// ---------------------------------------------------------------------------

/**
 * The read buffer each connection holds while it is open: small, because a
 * connection that is only waiting must not pin a large buffer (FINDINGS:
 * RSS grows with the buffer a pending read holds). Pooled large buffers are
 * for peers that send more.
 */
const PROBE_SIZE = 128;
/** Probes carved from one slab: one backing store for this many connections. */
const PROBES_PER_SLAB = 512;
/** Pooled buffer for connections that bring more than a probe's worth. */
const LARGE_SIZE = 16 * 1024;
/** Free large buffers kept for reuse; past it they go to the GC. */
const POOL_KEEP = 128;
/**
 * What a draining connection reads after its FIN, to drop: one buffer for
 * all of them, as the bytes are thrown away (overlapping reads into it do
 * no harm), and large, so a client that keeps sending is drained in few
 * reads, not 128 bytes at a time. Never pooled: `#release` takes back only
 * LARGE_SIZE buffers and probes.
 */
const DISCARD_SIZE = 64 * 1024;

/** Large buffers lent to busy connections and taken back when written. */
class BufferPool {
  #free: Uint8Array[] = [];

  take(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(LARGE_SIZE);
  }

  give(buffer: Uint8Array): void {
    if (this.#free.length < POOL_KEEP) this.#free.push(buffer);
  }
}

/**
 * Probes, carved from shared slabs and reused: an `ArrayBuffer` of its own
 * per connection costs several hundred bytes of RSS beyond its contents
 * (measured: 10,000 connections holding a read on their own 128-byte
 * buffers cost 0.6-0.9 KB more each than on views of shared slabs). A probe
 * goes back only once no read or write uses it (closing a `Deno.Conn`
 * cancels its pending read, so this is a safeguard, not the only one); the
 * pool keeps every probe it made, bounded by the most connections open at
 * once.
 */
class ProbePool {
  #free: Uint8Array[] = [];
  #slab: Uint8Array | undefined = undefined;
  #next = 0; // offset of the next unused probe in the slab

  take(): Uint8Array {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#slab === undefined || this.#next === this.#slab.length) {
      this.#slab = new Uint8Array(PROBE_SIZE * PROBES_PER_SLAB);
      this.#next = 0;
    }
    const probe = this.#slab.subarray(this.#next, this.#next + PROBE_SIZE);
    this.#next += PROBE_SIZE;
    return probe;
  }

  give(probe: Uint8Array): void {
    this.#free.push(probe);
  }
}

/**
 * The per-connection context, the notes' completion key. Each field says
 * what it holds; at most one read and one write are in flight, which is
 * what keeps a connection's bytes in order whatever the number of workers.
 */
class PerSocket {
  /** The core's session (connection, id, idle clock). */
  readonly session: Session;
  /** The connection as associated with the port: where I/O is issued. */
  socket!: PortSocket<PerSocket>;
  /** The small buffer a trickling or idle connection reads into. */
  probe: Uint8Array | undefined;
  /** The OVERLAPPED of reads: IO_Read_Request, then IO_Read_Completed. */
  readonly readOp: Completion<PerSocket>;
  /** The OVERLAPPED of writes: IO_Write_Request, then IO_Write_Completed. */
  readonly writeOp: Completion<PerSocket>;
  /** Buffer of the read in flight, if any. */
  readBuffer: Uint8Array | undefined = undefined;
  /** Buffer being written back, and how many of its bytes. */
  writeBuffer: Uint8Array | undefined = undefined;
  writeLength = 0;
  /** A read that completed while a write was in flight, waiting its turn. */
  heldBuffer: Uint8Array | undefined = undefined;
  heldLength = 0;
  /** Bytes the last read brought: a full buffer means more is coming. */
  lastRead = 0;
  /** A read is in flight (WSARecv issued, not completed). */
  reading = false;
  /** A write is in flight (WSASend issued, not completed). */
  writing = false;
  /** No more reads to echo: the peer sent its FIN, or the server drains. */
  readShut = false;
  /** The peer sent its FIN (a read of 0 bytes). */
  eof = false;
  /** The server is shutting down: echo what was read, then linger. */
  draining = false;
  /** FIN sent after the last echo; reads now only wait for the peer's. */
  lingering = false;
  /** closesocket done; late completions only give back buffers. */
  closed = false;

  constructor(session: Session, probe: Uint8Array) {
    this.session = session;
    this.probe = probe;
    this.readOp = { key: this, operation: "IO_Read_Request", bytes: 0 };
    this.writeOp = { key: this, operation: "IO_Write_Request", bytes: 0 };
  }
}

/**
 * The notes' echo engine on a {@linkcode CompletionPort}: the accept loop
 * (in the shared core) hands over each session, which is associated and
 * given its first IO_Read_Request; `workers` loops take completions and
 * issue the next operation.
 *
 * @internal What {@linkcode serveCompletionEcho} runs; exported so tests
 * can call `drain()` at a chosen moment between a read's completion and
 * its handling, which no client can time from outside.
 */
export class CompletionEngine implements EchoEngine {
  #core: EchoCore;
  #port: CompletionPort<PerSocket>;
  #pool = new BufferPool();
  #probes = new ProbePool();
  #contexts = new Map<Session, PerSocket>();
  #workers: Promise<void>[] = [];
  #discard: Uint8Array | undefined = undefined; // made by drain(): DISCARD_SIZE

  constructor(core: EchoCore, workers: number) {
    this.#core = core;
    // Main-> ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, maxConcurrency)
    this.#port = new CompletionPort<PerSocket>(workers);
    // Work1-> / Work2-> ::GetQueuedCompletionStatus(m_iocp, ..., INFINITE)
    for (let i = 0; i < workers; i++) this.#workers.push(this.#work());
  }

  open(session: Session): void {
    const ctx = new PerSocket(session, this.#probes.take());
    this.#contexts.set(session, ctx);
    // Main-> ::CreateIoCompletionPort(hDevice, m_iocp, completionKey, 0)
    ctx.socket = this.#port.associate(session.conn, ctx);
    // Main-> ::PostQueuedCompletionStatus: Queue IO_Read_Request. (The notes
    // also queue an IO_Write_Request here; an echo has nothing to send yet.)
    ctx.readOp.operation = "IO_Read_Request";
    this.#port.post(ctx.readOp);
  }

  close(session: Session): void {
    const ctx = this.#contexts.get(session);
    if (ctx) this.#closeSocket(ctx);
  }

  drain(): void {
    this.#discard ??= new Uint8Array(DISCARD_SIZE);
    const stats = this.#core.stats;
    for (const ctx of this.#contexts.values()) {
      // A read that has landed and waits in the port was read before the
      // stop: it is owed an echo.
      if (ctx.reading && !ctx.socket.receiving) {
        stats.bytesRead += ctx.readOp.bytes;
      }
      // Shutdown rule, server side: read no more to echo; a write in flight,
      // a read that has landed, or one that lands while a write is, is
      // written back, then linger.
      ctx.readShut = true;
      ctx.draining = true;
      if (!ctx.writing && ctx.heldBuffer === undefined) this.#linger(ctx);
    }
  }

  held(session: Session): number {
    const ctx = this.#contexts.get(session);
    if (ctx === undefined) return 0;
    let held = ctx.writing ? ctx.writeLength : 0;
    if (ctx.heldBuffer !== undefined) held += ctx.heldLength;
    // A landed read not yet handled; after our FIN it is input to drop.
    if (ctx.reading && !ctx.socket.receiving && !ctx.lingering) {
      held += ctx.readOp.bytes;
    }
    return held;
  }

  async stop(): Promise<void> {
    this.#port.close();
    await Promise.all(this.#workers);
  }

  /** One worker thread of the notes: take a completion, act, ask again. */
  async #work(): Promise<void> {
    using worker = this.#port.worker();
    for (;;) {
      // Completions already queued are taken without a promise each.
      const completion = worker.tryGet() ?? await worker.get();
      if (completion === PORT_CLOSED) return;
      const ctx = completion.key;
      try {
        switch (completion.operation) {
          case "IO_Read_Request":
            this.#readRequest(ctx);
            break;
          case "IO_Read_Completed":
            this.#readCompleted(ctx, completion.bytes, completion.error);
            break;
          case "IO_Write_Request":
            this.#writeRequest(ctx);
            break;
          case "IO_Write_Completed":
            this.#writeCompleted(ctx, completion.bytes, completion.error);
            break;
        }
      } catch (error) {
        // A bug must cost one connection, never a worker.
        this.#closeSocket(ctx, error);
      }
    }
  }

  /** Proc IO_Read_Request: Receive (WSARecv) and Queue IO_Read_Completed. */
  #readRequest(ctx: PerSocket): void {
    if (ctx.closed || ctx.reading || (ctx.readShut && !ctx.lingering)) return;
    // The probe while the connection trickles and the probe is free; a
    // pooled buffer once a read has filled the probe, as more is likely
    // waiting (and the probe is then being echoed). After our FIN, input
    // is only dropped: the shared discard buffer.
    const probe = ctx.probe!;
    const buffer = ctx.lingering
      ? this.#discard!
      : ctx.lastRead < PROBE_SIZE && ctx.writeBuffer !== probe &&
          ctx.heldBuffer !== probe
      ? probe
      : this.#pool.take();
    ctx.readBuffer = buffer;
    ctx.reading = true;
    ctx.readOp.operation = "IO_Read_Completed";
    ctx.socket.recv(ctx.readOp, buffer);
  }

  /**
   * Proc IO_Read_Completed: if 0 bytes read then Client Shutdown Socket;
   * else Queue IO_Write_Request (to do echo) and Queue IO_Read_Request.
   */
  #readCompleted(ctx: PerSocket, bytes: number, error: unknown): void {
    ctx.reading = false;
    const buffer = ctx.readBuffer!;
    ctx.readBuffer = undefined;
    if (ctx.closed) return this.#release(ctx, buffer);
    if (error !== undefined) {
      this.#release(ctx, buffer);
      // After our FIN the peer owes us nothing: its close, even by reset,
      // ends the connection quietly.
      return this.#closeSocket(ctx, ctx.lingering ? undefined : error);
    }
    if (bytes === 0) {
      // NOTE: if 0 bytes read then Client Shutdown Socket.
      this.#release(ctx, buffer);
      return this.#clientShutdown(ctx);
    }
    if (ctx.lingering) {
      // Input after our FIN is dropped; keep reading until the peer's.
      this.#release(ctx, buffer);
      ctx.readOp.operation = "IO_Read_Request";
      this.#port.post(ctx.readOp);
      return;
    }
    // Reads handled once the drain began were counted by drain() if they
    // had landed before it; the rest came after the stop.
    if (!ctx.draining) this.#core.stats.bytesRead += bytes;
    ctx.session.active = true;
    ctx.lastRead = bytes;
    if (ctx.writing) {
      // It waits for the write before it; no read until that one is done.
      ctx.heldBuffer = buffer;
      ctx.heldLength = bytes;
      return;
    }
    this.#queueWrite(ctx, buffer, bytes);
  }

  /**
   * Queue IO_Write_Request (to do echo) and Queue IO_Read_Request, as the
   * notes do, after a read that filled its buffer: more is likely waiting,
   * so the next read runs while this echo is written, and a client's FIN
   * can arrive while a send is in progress (the shutdown rule). After a read
   * shorter than a probe the peer has sent all it had (a request-response
   * peer sends nothing before its answer): then the worker sends at once
   * instead of queueing the request and taking it straight back, and the
   * next read waits for the echo. Measured in 64-byte pingpong, both cut
   * the CPU per message.
   */
  #queueWrite(ctx: PerSocket, buffer: Uint8Array, bytes: number): void {
    ctx.writeBuffer = buffer;
    ctx.writeLength = bytes;
    ctx.writing = true;
    if (bytes < PROBE_SIZE) return this.#writeRequest(ctx);
    ctx.writeOp.operation = "IO_Write_Request";
    this.#port.post(ctx.writeOp);
    if (!ctx.readShut && !ctx.reading) {
      ctx.readOp.operation = "IO_Read_Request";
      this.#port.post(ctx.readOp);
    }
  }

  /** Proc IO_Write_Request: Send (WSASend) and Queue IO_Write_Completed. */
  #writeRequest(ctx: PerSocket): void {
    if (ctx.closed) {
      // Closed while the request was queued: the write never starts.
      ctx.writing = false;
      this.#release(ctx, ctx.writeBuffer!);
      ctx.writeBuffer = undefined;
      return;
    }
    ctx.writeOp.operation = "IO_Write_Completed";
    ctx.socket.send(ctx.writeOp, ctx.writeBuffer!, ctx.writeLength);
  }

  /**
   * Proc IO_Write_Completed: the notes note it and do nothing (but verify
   * all data sent); here it also starts what waited on the write: the held
   * read's echo, the next read, or the close the shutdown rule put off.
   */
  #writeCompleted(ctx: PerSocket, bytes: number, error: unknown): void {
    ctx.writing = false;
    const buffer = ctx.writeBuffer;
    ctx.writeBuffer = undefined;
    if (buffer) this.#release(ctx, buffer);
    this.#core.stats.bytesEchoed += bytes;
    if (ctx.closed) return;
    if (error !== undefined) return this.#closeSocket(ctx, error);
    ctx.session.active = true;
    const held = ctx.heldBuffer;
    if (held !== undefined) {
      ctx.heldBuffer = undefined;
      return this.#queueWrite(ctx, held, ctx.heldLength);
    }
    if (ctx.eof) {
      // The write path has emptied its buffer: it now does the close the
      // shutdown rule left to it ("it will then call Shutdown again").
      this.#closeSocket(ctx);
      return;
    }
    if (ctx.draining) return this.#linger(ctx);
    // The next read, issued by this worker rather than queued and taken
    // straight back.
    if (!ctx.reading) this.#readRequest(ctx);
  }

  /**
   * [telnet was killed] Client Connection Dropped: if a send is in process,
   * shut down only the receive side and let the write empty its buffer and
   * close; otherwise shutdown and closesocket now.
   */
  #clientShutdown(ctx: PerSocket): void {
    ctx.readShut = true; // how = SD_RECEIVE: no more reads
    ctx.eof = true;
    if (ctx.writing || ctx.heldBuffer !== undefined) {
      if (this.#core.verbose) {
        this.#core.log(
          `connection ${ctx.session.id} shut down during a send: receive side shut, closing once the send drains`,
        );
      }
      return;
    }
    this.#closeSocket(ctx);
  }

  /**
   * Server shutdown after the last echo: shutdown(SD_SEND) now, closesocket
   * once the peer closes too (or the grace period ends). Closing at once
   * could meet input not yet read, and the kernel would answer it with a
   * reset that can destroy echoed bytes still on their way to the client.
   */
  #linger(ctx: PerSocket): void {
    if (ctx.closed || ctx.lingering) return;
    if (ctx.eof) return this.#closeSocket(ctx);
    // The FIN waits for a read that has landed, its IO_Read_Completed still
    // queued for a worker: those bytes were read and are owed their echo,
    // after which the write's completion comes back here. A read still
    // pending in the kernel does not hold it up: what it brings arrives
    // after the stop, and waiting for it would keep an idle client from its
    // FIN until --grace; it lands after the FIN and is dropped.
    if (ctx.reading && !ctx.socket.receiving) return;
    ctx.lingering = true;
    (ctx.session.conn.closeWrite() as Promise<void>).catch(() => {
      // Already shut or reset: the read below finds out.
    });
    if (!ctx.reading) {
      ctx.readOp.operation = "IO_Read_Request";
      this.#port.post(ctx.readOp);
    }
  }

  /** ::shutdown(m_socket, how); ::closesocket(m_socket). */
  #closeSocket(ctx: PerSocket, error?: unknown): void {
    if (ctx.closed) return;
    ctx.closed = true;
    ctx.readShut = true;
    this.#contexts.delete(ctx.session);
    const conn = ctx.socket.dissociate();
    try {
      conn.close();
    } catch {
      // Already closed by the runtime.
    }
    const held = ctx.heldBuffer;
    if (held !== undefined) {
      ctx.heldBuffer = undefined;
      this.#release(ctx, held);
    }
    const probe = ctx.probe;
    if (
      probe !== undefined && probe !== ctx.readBuffer &&
      probe !== ctx.writeBuffer
    ) this.#release(ctx, probe);
    // Buffers of I/O still in flight come back with their completions.
    const quiet = error === undefined || isClosed(error);
    this.#core.end(ctx.session, quiet ? undefined : error);
  }

  /**
   * Gives back a buffer no I/O uses any more: a large one to its pool, the
   * probe only once its connection is closed.
   */
  #release(ctx: PerSocket, buffer: Uint8Array): void {
    if (buffer.length === LARGE_SIZE) {
      this.#pool.give(buffer);
    } else if (ctx.closed && buffer === ctx.probe) {
      ctx.probe = undefined;
      this.#probes.give(buffer);
    }
  }
}

// ---------------------------------------------------------------------------
// Serving, in one thread or in several Web Workers
// ---------------------------------------------------------------------------

/** Options of {@linkcode serveCompletionEcho}. */
export interface CompletionEchoOptions extends EchoServerOptions {
  /** Worker loops per thread: the notes' maxConcurrency. Default 2. */
  workers?: number;
  /**
   * Copies of the server, each in a Web Worker with its own listener on
   * the same port (SO_REUSEPORT; Linux only, elsewhere 1). Default 1.
   */
  threads?: number;
  /** Bind with SO_REUSEPORT even with one thread. Default false. */
  reusePort?: boolean;
}

/** Name given to this module's Web Workers, by which it knows it is one. */
const THREAD_NAME = "socket-notes completion_echo thread";
/** How often a thread sends its counters to the main thread, in ms. */
const STATS_INTERVAL = 200;

/** Messages between the main thread and a server thread. */
type ThreadOptions = Omit<CompletionEchoOptions, "log" | "signal" | "threads">;
type ToThread =
  | { type: "start"; options: ThreadOptions; index: number }
  | { type: "close" };
type FromThread =
  | { type: "listening"; addr: Deno.NetAddr }
  | { type: "error"; message: string }
  | { type: "log"; line: string }
  | { type: "stats"; stats: EchoStats }
  | { type: "finished"; stats: EchoStats };

/**
 * Starts the notes' I/O completion port echo server: the accept loop
 * associates each connection with a {@linkcode CompletionPort} and posts its
 * first IO_Read_Request; `workers` loops echo. With `threads` above 1 (Linux)
 * the server runs that many times in Web Workers on one port and the handle
 * sums their counters, each thread's kept in `stats().perThread`.
 *
 * Requires `--allow-net`; `threads` above 1 needs `--unstable-net` (set in
 * this package's deno.json) and `--allow-read` for the Worker's module.
 *
 * @param options Where to listen, limits, workers, threads.
 * @returns The running server; `close()` drains it and gives final stats.
 * @throws {RangeError} If `workers` or `threads` is not a whole number of
 * at least 1.
 * @throws {CliError} If the address cannot be bound.
 *
 * @example
 * ```ts ignore
 * import { serveCompletionEcho } from "./completion_echo.ts";
 * const server = await serveCompletionEcho({ port: 0, threads: 2 });
 * console.log(server.addr.port);
 * console.log(await server.close());
 * ```
 */
export function serveCompletionEcho(
  options: CompletionEchoOptions & { unix: string },
): Promise<EchoServer<Deno.UnixAddr>>;
/** Over TCP or TLS: the server's address is a `Deno.NetAddr`. */
export function serveCompletionEcho(
  options?: CompletionEchoOptions,
): Promise<EchoServer<Deno.NetAddr>>;
export async function serveCompletionEcho(
  options: CompletionEchoOptions = {},
): Promise<EchoServer<Addr>> {
  const workers = options.workers ?? 2;
  let threads = options.threads ?? 1;
  for (const [name, value] of [["workers", workers], ["threads", threads]]) {
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      throw new RangeError(
        `Cannot use ${name} "${value}": expected a whole number of at least 1`,
      );
    }
  }
  const log = options.log ?? ((line: string) => console.error(line));
  if (threads > 1 && options.unix !== undefined) {
    throw new RangeError(
      `Cannot use threads "${threads}" with unix: threads share a TCP port (SO_REUSEPORT)`,
    );
  }
  if (threads > 1 && Deno.build.os !== "linux") {
    log(
      `--threads ${threads}: SO_REUSEPORT port sharing needs Linux; running 1 thread`,
    );
    threads = 1;
  }
  if ((threads > 1 || options.reusePort) && !hasUnstableNet()) {
    throw new CliError(
      "Cannot share the port between threads: Deno.listen's reusePort needs --unstable-net (this package's deno.json sets it); add the flag or use one thread",
    );
  }
  if (threads > 1) checkWorkerReadable(threads);
  if (threads === 1) {
    const listener = await listen(listenEndpoint(options, 0));
    return runEchoServer(
      listener,
      options,
      (core) => new CompletionEngine(core, workers),
    );
  }
  return await serveThreads(options, workers, threads, log);
}

/** One server thread as the main thread sees it. */
interface ThreadHandle {
  /** The Web Worker. */
  worker: Worker;
  /** Its latest counters. */
  stats: EchoStats;
  /** Resolves with its final counters. */
  finished: Promise<EchoStats>;
}

/** The main thread of `--threads T`: start, gather stats, stop. */
async function serveThreads(
  options: CompletionEchoOptions,
  workers: number,
  threads: number,
  log: (line: string) => void,
): Promise<EchoServer<Addr>> {
  const shared = new Int32Array(new SharedArrayBuffer(4));
  const handles: ThreadHandle[] = [];
  const watch = new StatsWatch(() => sumStats(handles.map((h) => h.stats)));
  const base = {
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    maxConnections: options.maxConnections,
    idleTimeout: options.idleTimeout,
    grace: options.grace,
    verbose: options.verbose,
    // Every thread serves the same endpoint: TLS with the same certificate
    // (PEM text clones into a Worker), the same access lists.
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.allow !== undefined ? { allow: options.allow } : {}),
    ...(options.deny !== undefined ? { deny: options.deny } : {}),
    workers,
    reusePort: true,
    sharedActive: shared,
  };
  let addr: Deno.NetAddr | undefined;
  try {
    // One after another: the first binds (port 0 picks the port), the rest
    // join its port through SO_REUSEPORT.
    for (let index = 0; index < threads; index++) {
      const port = addr?.port ?? base.port;
      const { handle, listening } = startThread(
        { ...base, port },
        index,
        log,
        () => watch.changed(),
      );
      handles.push(handle);
      addr = await listening;
    }
  } catch (error) {
    for (const h of handles) h.worker.terminate();
    throw error;
  }
  const bound = addr!;

  let stopping: Promise<EchoStats> | undefined;
  function stop(): Promise<EchoStats> {
    stopping ??= (async () => {
      for (const h of handles) h.worker.postMessage({ type: "close" });
      const finals = await Promise.all(handles.map((h) => h.finished));
      watch.stop();
      return sumStats(finals);
    })();
    return stopping;
  }
  let resolveFinished!: (stats: EchoStats) => void;
  const finished = new Promise<EchoStats>((r) => resolveFinished = r);
  const onAbort = () => stop().then(resolveFinished);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  finished.finally(() => options.signal?.removeEventListener("abort", onAbort));

  function close(): Promise<EchoStats> {
    return stop().then((stats) => {
      resolveFinished(stats);
      return stats;
    });
  }
  return {
    addr: bound,
    stats: () => sumStats(handles.map((h) => h.stats)),
    until: (test, signal) => watch.until(test, signal),
    finished,
    close,
    [Symbol.asyncDispose]: () => close().then(() => {}),
  };
}

/** Starts server thread `index` and returns its handle and bound address. */
function startThread(
  options: ThreadOptions,
  index: number,
  log: (line: string) => void,
  onStats: () => void,
): { handle: ThreadHandle; listening: Promise<Deno.NetAddr> } {
  const worker = new Worker(import.meta.url, {
    type: "module",
    name: THREAD_NAME,
  });
  const empty: EchoStats = sumStats([]);
  delete empty.perThread;
  let onListening!: (addr: Deno.NetAddr) => void;
  let onFailed!: (error: Error) => void;
  const listening = new Promise<Deno.NetAddr>((resolve, reject) => {
    onListening = resolve;
    onFailed = reject;
  });
  let onFinished!: (stats: EchoStats) => void;
  const finished = new Promise<EchoStats>((r) => onFinished = r);
  const handle: ThreadHandle = { worker, stats: empty, finished };
  worker.onmessage = (event: MessageEvent<FromThread>) => {
    const message = event.data;
    switch (message.type) {
      case "listening":
        started = true;
        onListening(message.addr);
        break;
      case "error":
        onFailed(new CliError(message.message));
        worker.terminate();
        onFinished(handle.stats);
        break;
      case "log":
        log(`[thread ${index}] ${message.line}`);
        break;
      case "stats":
        handle.stats = message.stats;
        onStats();
        break;
      case "finished":
        handle.stats = message.stats;
        worker.terminate();
        onFinished(message.stats);
        break;
    }
  };
  let started = false;
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault();
    // Before "listening" the caller reports the failure; after, log it.
    if (started) log(`[thread ${index}] failed: ${event.message}`);
    onFailed(new CliError(`Thread ${index} failed: ${event.message}`));
    worker.terminate();
    onFinished(handle.stats);
  };
  worker.postMessage({ type: "start", options, index } satisfies ToThread);
  return { handle, listening };
}

/** The body of a server thread (a Web Worker running this module). */
function runThread(): void {
  const scope = self as unknown as {
    postMessage(message: FromThread): void;
    onmessage: ((event: MessageEvent<ToThread>) => void) | null;
    close(): void;
  };
  let server: EchoServer | undefined;
  scope.onmessage = async (event) => {
    const message = event.data;
    if (message.type === "close") {
      server?.close();
      return;
    }
    try {
      server = await serveCompletionEcho({
        ...message.options,
        threads: 1,
        log: (line) => scope.postMessage({ type: "log", line }),
      });
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      scope.postMessage({ type: "error", message: text });
      return;
    }
    scope.postMessage({ type: "listening", addr: server.addr });
    // Counters go to the main thread a few times a second, only on change.
    let last = "";
    const timer = setInterval(() => {
      const stats = server!.stats();
      const text = JSON.stringify(stats);
      if (text !== last) {
        last = text;
        scope.postMessage({ type: "stats", stats });
      }
    }, STATS_INTERVAL);
    const stats = await server.finished;
    clearInterval(timer);
    scope.postMessage({ type: "finished", stats });
  };
}

/**
 * Whether `--unstable-net` is on. Without it `Deno.listen({ reusePort })`
 * ends the process (exit 70) instead of throwing, so ask first: the flag
 * also exposes `Deno.listenDatagram`.
 */
function hasUnstableNet(): boolean {
  return typeof (Deno as { listenDatagram?: unknown }).listenDatagram ===
    "function";
}

/**
 * A Web Worker loads this module and its two imports from disk, which needs
 * read access to them; without it the Worker dies with a stack trace, so
 * ask first and say what to add.
 *
 * @throws {CliError} If a module file cannot be read.
 */
function checkWorkerReadable(threads: number): void {
  // A `deno compile` binary loads its Workers from the embedded modules,
  // under a `deno-compile-` path, with no read access needed.
  if (import.meta.url.includes("/deno-compile-")) return;
  const modules = [
    "./completion_echo.ts",
    "./_echo.ts",
    "../_cli.ts",
    "../_net.ts",
    "../_accept.ts",
    "../_access.ts",
    "../_tls_errors.ts",
  ];
  for (const module of modules) {
    const url = new URL(module, import.meta.url);
    if (url.protocol !== "file:") continue;
    const path = decodeURIComponent(url.pathname);
    const status = Deno.permissions.querySync({ name: "read", path });
    if (status.state !== "granted") {
      const root = decodeURIComponent(new URL("../", import.meta.url).pathname);
      throw new CliError(
        `--threads ${threads} runs this module in Web Workers, which need to read it: add --allow-read=${root}`,
      );
    }
  }
}

/** Whether this module is running as one of its own server threads. */
function isServerThread(): boolean {
  return typeof (globalThis as { WorkerGlobalScope?: unknown })
        .WorkerGlobalScope !== "undefined" &&
    (globalThis as { name?: string }).name === THREAD_NAME;
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const COMMAND = {
  name: "servers/completion_echo.ts",
  summary:
    "The notes' I/O completion port echo server: a completion port with --workers loops (maxConcurrency), the notes' IO_Read/IO_Write requests and completions, the shutdown rule for a client that closes while its echo is being written, and --threads copies sharing the port (SO_REUSEPORT, Linux).",
  options: {
    ...ECHO_OPTIONS,
    workers: {
      type: "string" as const,
      short: "w",
      default: "2",
      arg: "N",
      description:
        "Worker loops taking completions: the notes' maxConcurrency.",
    },
    threads: {
      type: "string" as const,
      short: "t",
      default: "1",
      arg: "T",
      description: "Copies of the server in Web Workers on one port (Linux).",
    },
  },
  epilog: `Examples:
  deno run --allow-net=127.0.0.1 servers/completion_echo.ts --port 0
  deno run --allow-net=127.0.0.1 --allow-read servers/completion_echo.ts -p ${NOTES_PORT} --threads 2
  ncat 127.0.0.1 ${NOTES_PORT}

${manyConnectionsHelp("servers/completion_echo.ts", "completion-echo")}

Prints "listening on HOST:PORT"; on SIGINT/SIGTERM stops accepting, lets
every connection finish its echo (within --grace) and prints the stats.`,
};

/**
 * The command line: `deno run --allow-net --allow-read
 * servers/completion_echo.ts [options]`. Returns the exit code.
 */
export function main(args: string[]): Promise<number> {
  return echoServerMain(args, COMMAND, async (values, signal) => {
    const shared = await parseEchoOptions(values);
    const workers = parseInteger(values.workers, "--workers", 1, 1024);
    const threads = parseInteger(values.threads, "--threads", 1, 64);
    if (threads > 1 && shared.unix !== undefined) {
      throw new UsageError(
        "--threads and --unix do not combine: threads share a TCP port",
      );
    }
    return serveCompletionEcho({ ...shared, workers, threads, signal });
  });
}

// A server thread loads this module as its Worker entry: it must serve, not
// parse a command line, whatever `import.meta.main` says there.
if (isServerThread()) {
  runThread();
} else if (import.meta.main) {
  runMain(main);
}
