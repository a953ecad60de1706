/**
 * What both echo servers share, so that each file holds only its own I/O
 * model: the accept loop with the connection cap and EMFILE back-off, the
 * idle sweep, the stats, graceful shutdown with a grace period, logging, the
 * server handle, and the command line. An I/O model plugs in as an
 * {@linkcode EchoEngine}: the select server's readiness loop, or the
 * completion server's port and workers.
 *
 * Private to this package.
 *
 * @module
 */

import {
  type CommandSpec,
  describeError,
  isClosed,
  type OptionSpec,
  parseCommandLine,
  parseInteger,
  parseSeconds,
  shutdownSignal,
  sleep,
} from "../_cli.ts";
import { Acceptor } from "../_accept.ts";
import { StatsWatch } from "../_watch.ts";
import { ECHO_RUNTIME_ENV, ECHO_V8_FLAGS } from "../_runtime.ts";
import { type Addr, formatAddr, printListening } from "../_net.ts";
import {
  accessControl,
  parseServerEndpoint,
  SERVER_ENDPOINT_OPTIONS,
  type ServerEndpointOptions,
  TLS_LIMITS_HELP,
} from "../_net_options.ts";

/**
 * Options shared by the echo servers: where to listen (TCP on 127.0.0.1 and
 * a free port by default; `tls`, `unix`, `allow` and `deny` as the network
 * layer takes them), then the server's own.
 */
export interface EchoServerOptions extends ServerEndpointOptions {
  /** Connections served at once; a new one past this is closed. Default 10000. */
  maxConnections?: number;
  /** Close a connection idle this many milliseconds; 0 is off. Default 0. */
  idleTimeout?: number;
  /** On shutdown, how long held bytes may take to drain, in ms. Default 5000. */
  grace?: number;
  /** Log each accept and close. Default false. */
  verbose?: boolean;
  /** Where log lines go. Default `console.error`. */
  log?: (line: string) => void;
  /** Aborting it shuts the server down as `close()` does. */
  signal?: AbortSignal;
  /**
   * A counter of open connections shared by several servers (element 0 of a
   * `SharedArrayBuffer`-backed array, updated with `Atomics`), so that
   * `maxConnections` caps them together: servers in Web Workers sharing one
   * port through `reusePort`. Without it the cap counts this server alone.
   */
  sharedActive?: Int32Array;
}

/** Counters of an echo server, live. */
export interface EchoStats {
  /** Connections accepted and served. */
  accepted: number;
  /** Connections closed at once because the cap was reached. */
  rejected: number;
  /** Connections open now. */
  active: number;
  /** Most connections open at once. */
  peak: number;
  /**
   * Bytes read before the stop, each owed an echo: every read while
   * serving, and at SIGINT/SIGTERM the reads that had completed (queued,
   * not yet handled). Input that arrives later is not counted: it is read
   * and dropped after the connection's FIN (or echoed if it lands before).
   */
  bytesRead: number;
  /** Bytes written back to clients. */
  bytesEchoed: number;
  /** Connections that ended in an error (reset, broken pipe, ...). */
  errors: number;
  /** Connections closed by the idle timeout. */
  idleClosed: number;
  /** Connections still open when the shutdown's `--grace` ran out, cut then. */
  graceClosed: number;
  /**
   * Bytes those cut connections had read and not yet written back (a write
   * in flight counts in full): echo that was owed and lost.
   */
  bytesUnechoed: number;
  /** Failed `accept()` calls that backed off (EMFILE and the like). */
  acceptErrors: number;
  /** Connections gone before they were accepted (reset in the backlog). */
  acceptAborted: number;
  /** Connections refused by `--allow`/`--deny`, closed at accept. */
  denied: number;
  /**
   * Bytes read and not yet written back, now, over all connections (engines
   * that track it: the select server).
   */
  bytesHeld?: number;
  /** The most bytes one connection has held at once (as `bytesHeld`). */
  peakHeld?: number;
  /** Bytes of the open connections' buffers, now (the select server). */
  bufferBytes?: number;
  /** The largest buffer a connection has had (the select server). */
  peakBuffer?: number;
  /**
   * With several threads (Web Workers sharing the port), each one's
   * counters, in thread order; the fields above are their sums.
   */
  perThread?: EchoStats[];
}

/**
 * A running echo server, as returned by `serveSelectEcho` and friends; `A`
 * is its address type (TCP/TLS, or a Unix socket's path).
 */
export interface EchoServer<A extends Addr = Deno.NetAddr>
  extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked). */
  readonly addr: A;
  /** A snapshot of the counters. */
  stats(): EchoStats;
  /**
   * Stops accepting, lets every connection write back what it has read
   * (within the grace period), closes the rest, and resolves with the final
   * counters. Safe to call more than once.
   */
  close(): Promise<EchoStats>;
  /** Resolves with the final counters once the server has stopped. */
  readonly finished: Promise<EchoStats>;
  /**
   * Resolves with the counters once `test` holds for them: checked now and
   * at every change the server reports (a connection accepted, rejected or
   * ended, and moments an engine adds, such as the select server's buffer
   * filling), so a caller waits for "2 connections open" or "a session
   * ended with an error" without polling. Rejects with `signal`'s reason
   * when it aborts, and if the server stops before `test` holds.
   */
  until(
    test: (stats: EchoStats) => boolean,
    signal?: AbortSignal,
  ): Promise<EchoStats>;
}

/** One accepted connection, as the core tracks it. */
export interface Session {
  /** Sequence number, for logs. */
  readonly id: number;
  /** The connection. The engine owns its reads, writes and close. */
  readonly conn: Deno.Conn;
  /** `IP:PORT` of the peer, for logs. */
  readonly remote: string;
  /**
   * Set by the engine whenever a byte is read or written, and cleared by the
   * idle sweep: a store per message, where a clock read would be a call into
   * the runtime.
   */
  active: boolean;
  /** `performance.now()` of the sweep that last found `active` set. */
  lastSeen: number;
}

/** An I/O model: how an echo server moves bytes for the sessions it is given. */
export interface EchoEngine {
  /** Starts serving a new session. */
  open(session: Session): void;
  /** Closes a session now (idle timeout, end of grace). Must call `core.end`. */
  close(session: Session): void;
  /**
   * Shutdown has begun: read no more; close each session once every byte it
   * has read is written back (calling `core.end` for each).
   */
  drain(): void;
  /**
   * Bytes `session` has read and not yet written back, for the stats of a
   * connection cut when the grace period ends.
   */
  held(session: Session): number;
  /**
   * Optional: every session has ended; release what the engine holds (worker
   * loops, queues). The server's `finished` waits for it.
   */
  stop?(): void | Promise<void>;
}

/**
 * The part of a server every engine reports to. Engines call `end` exactly
 * once per session and add to `stats.bytesRead` and `stats.bytesEchoed` as
 * they read and write.
 */
export class EchoCore {
  /** Live counters; engines add to `bytesRead` and `bytesEchoed`. */
  readonly stats: EchoStats = emptyStats();
  /** Sessions open now. */
  readonly sessions: Set<Session> = new Set();
  /** Where log lines go. */
  readonly log: (line: string) => void;
  /** Whether accepts and closes are logged. */
  readonly verbose: boolean;
  /**
   * The server's `until`: the core reports accepts, rejections and ends;
   * an engine calls `watch.changed()` at other moments worth waiting for.
   */
  readonly watch: StatsWatch<EchoStats> = new StatsWatch(() => ({
    ...this.stats,
  }));
  #emptied?: () => void;
  #shared?: Int32Array;

  /**
   * Builds a core that logs through `log`. `sharedActive` is the optional
   * cross-server counter of {@linkcode EchoServerOptions.sharedActive}.
   */
  constructor(
    log: (line: string) => void,
    verbose: boolean,
    sharedActive?: Int32Array,
  ) {
    this.log = log;
    this.verbose = verbose;
    this.#shared = sharedActive;
  }

  /**
   * Takes a place under the cap `max`; false when it is full. Each `true`
   * is given back by `end` for the session that took it.
   */
  admit(max: number): boolean {
    if (this.#shared === undefined) return this.stats.active < max;
    if (Atomics.add(this.#shared, 0, 1) < max) return true;
    Atomics.sub(this.#shared, 0, 1);
    return false;
  }

  /**
   * Records that a session has ended and its connection is closed. `error`
   * is what ended it, if anything but a clean close.
   */
  end(session: Session, error?: unknown): void {
    if (!this.sessions.delete(session)) return;
    this.stats.active--;
    if (this.#shared !== undefined) Atomics.sub(this.#shared, 0, 1);
    if (error !== undefined) {
      this.stats.errors++;
      this.log(
        `connection ${session.id} from ${session.remote}: ${
          describeError(error)
        }`,
      );
    } else if (this.verbose) {
      this.log(`closed connection ${session.id} from ${session.remote}`);
    }
    if (this.sessions.size === 0) this.#emptied?.();
    this.watch.changed();
  }

  /** Resolves when no session is open. */
  whenEmpty(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#emptied = resolve);
  }
}

/**
 * Runs an echo server on `listener` with the I/O model `makeEngine` builds.
 * The accept loop, cap, idle sweep, back-off and shutdown live here.
 */
export function runEchoServer(
  listener: Deno.Listener,
  options: EchoServerOptions,
  makeEngine: (core: EchoCore) => EchoEngine,
): EchoServer<Addr> {
  const maxConnections = options.maxConnections ?? 10_000;
  const idleTimeout = options.idleTimeout ?? 0;
  const grace = options.grace ?? 5_000;
  const core = new EchoCore(
    options.log ?? ((line) => console.error(line)),
    options.verbose ?? false,
    options.sharedActive,
  );
  const engine = makeEngine(core);
  const stopping = new AbortController();
  const addr = listener.addr as Addr;
  const access = accessControl(options);
  let nextId = 1;

  // One sweep for all connections, not a timer per connection: 10,000 timers
  // re-armed on every read would cost more than the echo itself. A session
  // active since the last sweep is stamped now; one not seen active for
  // idleTimeout is closed. It is never closed early: its last byte came at
  // or before the stamp. It may be closed up to two sweeps late, so sweep
  // every eighth of the timeout (at least 10 ms apart, at most 1 s).
  const sweep = idleTimeout > 0
    ? setInterval(() => {
      const now = performance.now();
      for (const session of core.sessions) {
        if (session.active) {
          session.active = false;
          session.lastSeen = now;
        } else if (now - session.lastSeen >= idleTimeout) {
          core.stats.idleClosed++;
          if (core.verbose) {
            core.log(`idle timeout on connection ${session.id}`);
          }
          engine.close(session);
        }
      }
    }, Math.max(10, Math.min(1000, idleTimeout / 8)))
    : undefined;

  async function acceptLoop(): Promise<void> {
    // One loop for every server (_net.ts): a connection lost before it was
    // accepted costs only itself, EMFILE and the like back off.
    const acceptor = new Acceptor(listener, {
      signal: stopping.signal,
      log: core.log,
      counters: core.stats,
      access,
    });
    let burst = 0; // connections rejected since the cap was last reached
    for (;;) {
      const conn = await acceptor.accept();
      if (conn === undefined) return;
      if (!core.admit(maxConnections)) {
        // The notes warn past 63 sockets; here the cap is a setting and the
        // warning comes once per burst of rejections, not once per socket.
        core.stats.rejected++;
        if (burst++ === 0) {
          core.log(
            `connection cap ${maxConnections} reached: closing new connections`,
          );
        }
        conn.close();
        core.watch.changed();
        continue;
      }
      if (burst > 0) {
        core.log(`below the cap again after rejecting ${burst} connections`);
        burst = 0;
      }
      const remote = formatAddr(conn.remoteAddr as Addr);
      const session: Session = {
        id: nextId++,
        conn,
        remote,
        active: false,
        lastSeen: performance.now(),
      };
      core.sessions.add(session);
      core.stats.accepted++;
      core.stats.active++;
      if (core.stats.active > core.stats.peak) {
        core.stats.peak = core.stats.active;
      }
      if (core.verbose) {
        core.log(`accepted connection ${session.id} from ${remote}`);
      }
      engine.open(session);
      core.watch.changed();
    }
  }

  async function shutdown(): Promise<EchoStats> {
    if (!stopping.signal.aborted) {
      await new Promise((resolve) =>
        stopping.signal.addEventListener("abort", resolve, { once: true })
      );
    }
    listener.close();
    await accepting;
    engine.drain();
    // Said once the listener is closed: an operator (or a test) sees that
    // the stop has begun, and what it waits for.
    if (core.sessions.size > 0) {
      core.log(
        `stopped accepting: draining ${core.sessions.size} connections (grace ${
          grace / 1000
        } s)`,
      );
    }
    const timer = new AbortController();
    const drained = await Promise.race([
      core.whenEmpty().then(() => true),
      sleep(grace, timer.signal).then(() => false),
    ]);
    timer.abort();
    if (!drained) {
      core.log(
        `grace period over: closing ${core.sessions.size} connections`,
      );
      for (const session of [...core.sessions]) {
        // Counted before the close, which gives the held bytes back.
        core.stats.graceClosed++;
        core.stats.bytesUnechoed += engine.held(session);
        engine.close(session);
      }
    }
    if (sweep !== undefined) clearInterval(sweep);
    await engine.stop?.();
    core.watch.stop();
    return { ...core.stats };
  }

  const accepting = acceptLoop();
  const finished = shutdown();
  const onAbort = () => stopping.abort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) stopping.abort();
  finished.finally(() => options.signal?.removeEventListener("abort", onAbort));

  return {
    addr,
    stats: () => ({ ...core.stats }),
    until: (test, signal) => core.watch.until(test, signal),
    finished,
    close() {
      stopping.abort();
      return finished;
    },
    [Symbol.asyncDispose]() {
      stopping.abort();
      return finished.then(() => {});
    },
  };
}

/** Formats final counters as the one line a server prints when it stops. */
export function formatStats(stats: EchoStats): string {
  const threads = stats.perThread
    ? `; per thread: ${
      stats.perThread.map((t) => t.accepted).join(", ")
    } connections`
    : "";
  return `stats: ${stats.accepted} connections served, peak ${stats.peak} ` +
    `concurrent, ${stats.bytesRead} bytes read, ${stats.bytesEchoed} bytes ` +
    `echoed, ${stats.errors} errors, ${stats.rejected} rejected over the ` +
    `cap, ${stats.idleClosed} closed idle, ${stats.graceClosed} cut by ` +
    `--grace (${stats.bytesUnechoed} bytes unechoed), ` +
    `${stats.acceptErrors} accept errors, ${stats.acceptAborted} gone ` +
    `before accept, ${stats.denied} denied${threads}`;
}

/** Counters of a server that has done nothing yet. */
export function emptyStats(): EchoStats {
  return {
    accepted: 0,
    rejected: 0,
    active: 0,
    peak: 0,
    bytesRead: 0,
    bytesEchoed: 0,
    errors: 0,
    idleClosed: 0,
    graceClosed: 0,
    bytesUnechoed: 0,
    acceptErrors: 0,
    acceptAborted: 0,
    denied: 0,
  };
}

/**
 * Adds up the counters of several servers (threads sharing a port) and keeps
 * each one's in `perThread`. `peak` is the sum of the peaks: an upper bound,
 * as the threads need not have peaked at the same moment.
 */
export function sumStats(list: EchoStats[]): EchoStats {
  const total = emptyStats();
  for (const s of list) {
    total.accepted += s.accepted;
    total.rejected += s.rejected;
    total.active += s.active;
    total.peak += s.peak;
    total.bytesRead += s.bytesRead;
    total.bytesEchoed += s.bytesEchoed;
    total.errors += s.errors;
    total.idleClosed += s.idleClosed;
    total.graceClosed += s.graceClosed;
    total.bytesUnechoed += s.bytesUnechoed;
    total.acceptErrors += s.acceptErrors;
    total.acceptAborted += s.acceptAborted;
    total.denied += s.denied;
    // The select server's buffer counters: sums now, the largest at peak.
    if (s.bytesHeld !== undefined) {
      total.bytesHeld = (total.bytesHeld ?? 0) + s.bytesHeld;
    }
    if (s.bufferBytes !== undefined) {
      total.bufferBytes = (total.bufferBytes ?? 0) + s.bufferBytes;
    }
    if (s.peakHeld !== undefined) {
      total.peakHeld = Math.max(total.peakHeld ?? 0, s.peakHeld);
    }
    if (s.peakBuffer !== undefined) {
      total.peakBuffer = Math.max(total.peakBuffer ?? 0, s.peakBuffer);
    }
  }
  total.perThread = list.map((s) => ({ ...s }));
  return total;
}

/** The runtime settings of the echo servers: one module, `_runtime.ts`. */
export { ECHO_RUNTIME_ENV, ECHO_V8_FLAGS };

/**
 * The `--help` lines that say how to run `script` for many connections:
 * its `deno task` first (deno.json gives it these settings and the
 * narrowest permissions; options follow the task's name), then by hand.
 */
export function manyConnectionsHelp(script: string, task: string): string {
  const env = Object.entries(ECHO_RUNTIME_ENV).map(([k, v]) => `${k}=${v}`);
  return `For many busy connections, run it as its task does, with Deno's event loop
asking the kernel for ready sockets every turn and a smaller V8 young
generation (README); options go after the task's name:
  deno task ${task} --port 0 --max-connections 20000
or by hand:
  ${env.join(" ")} deno run ${ECHO_V8_FLAGS} --allow-net ${script}`;
}

/** The command-line options both echo servers take. */
export const ECHO_OPTIONS: Record<string, OptionSpec> = {
  ...SERVER_ENDPOINT_OPTIONS,
  "max-connections": {
    type: "string",
    default: "10000",
    arg: "N",
    description: "Connections served at once; past it new ones are closed.",
  },
  "idle-timeout": {
    type: "string",
    default: "0",
    arg: "SECONDS",
    description: "Close a connection idle this long; 0 is off.",
  },
  grace: {
    type: "string",
    default: "5",
    arg: "SECONDS",
    description: "On SIGINT/SIGTERM, time allowed to finish echoing.",
  },
  verbose: {
    type: "boolean",
    short: "v",
    description: "Log each accept and close.",
  },
};

/**
 * Reads the shared echo options out of parsed values: the endpoint (reading
 * certificate files) and the server's limits.
 */
export async function parseEchoOptions(
  values: Record<string, unknown>,
): Promise<
  & ServerEndpointOptions
  & Required<
    Pick<
      EchoServerOptions,
      "maxConnections" | "idleTimeout" | "grace" | "verbose"
    >
  >
> {
  return {
    ...await parseServerEndpoint(values),
    maxConnections: parseInteger(
      values["max-connections"],
      "--max-connections",
      1,
    ),
    idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout", true),
    grace: parseSeconds(values.grace, "--grace", true),
    verbose: values.verbose === true,
  };
}

/** What an echo server's `--help` says about signals beyond the first. */
const ECHO_SIGNALS_HELP =
  `SIGHUP counts as SIGTERM. A second signal during the drain prints the
stats so far and stops at once (exit 130).`;

/**
 * The command line of an echo server: parse, bind, print `listening on`,
 * serve until SIGINT/SIGTERM/SIGHUP, print the stats, exit 0; a second
 * signal during the drain prints the stats so far and exits 130. `serve`
 * turns the parsed values into a running server.
 */
export async function echoServerMain(
  args: string[],
  spec: CommandSpec,
  serve: (
    values: Record<string, unknown>,
    signal: AbortSignal,
  ) => Promise<EchoServer<Addr>>,
): Promise<number> {
  const parsed = parseCommandLine(args, {
    ...spec,
    epilog: `${spec.epilog ?? ""}\n${ECHO_SIGNALS_HELP}\n${TLS_LIMITS_HELP}`
      .trimStart(),
  });
  if (!parsed) return 0;
  const running: { server?: EchoServer<Addr> } = {}; // set once it is bound
  using shutdown = shutdownSignal({
    onForce() {
      if (!running.server) return;
      const stats = running.server.stats();
      console.log(formatStats(stats));
      console.error(
        `stopped by a second signal with ${stats.active} connections open`,
      );
    },
  });
  const server = running.server = await serve(parsed.values, shutdown.signal);
  printListening(server.addr);
  const stats = await server.finished;
  console.log(formatStats(stats));
  return 0;
}

export { isClosed };
