/**
 * The completion echo server's engine: the notes' state machine
 * (IO_Read_Request, IO_Read_Completed, IO_Write_Request,
 * IO_Write_Completed) and its shutdown rule on a
 * {@linkcode CompletionPort}, with the buffers it lends: a small probe per
 * connection, carved from shared slabs, and pooled large buffers for
 * connections that bring more.
 *
 * @module
 */

import {
  type EchoCore,
  type EchoEngine,
  isClosed,
  type Session,
} from "./_echo.ts";
import {
  type Completion,
  CompletionPort,
  PORT_CLOSED,
  type PortSocket,
} from "./_completion_port.ts";
import { BufferPool } from "./_buffer_pool.ts";

/**
 * The read buffer each connection holds while it is open: small, because a
 * connection that is only waiting must not pin a large buffer (RSS grows
 * with the buffer a pending read holds: docs/performance.md, "Measured
 * earlier"). Pooled large buffers are for peers that send more.
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
 * @internal What `serveCompletionEcho` runs; exported so tests
 * can call `drain()` at a chosen moment between a read's completion and
 * its handling, which no client can time from outside.
 */
export class CompletionEngine implements EchoEngine {
  #core: EchoCore;
  #port: CompletionPort<PerSocket>;
  /** Large buffers lent to busy connections and taken back when written. */
  #pool = new BufferPool(POOL_KEEP * LARGE_SIZE);
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
      : this.#pool.take(LARGE_SIZE);
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
