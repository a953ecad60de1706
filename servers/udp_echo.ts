#!/usr/bin/env -S deno run --unstable-net --allow-net
/**
 * The echo service over UDP (RFC 862, "UDP Based Echo Service"): every
 * datagram goes back to its sender whole and unchanged, up to 65,507 bytes
 * (the most an IPv4 datagram carries; 65,527 over IPv6), or over a Unix
 * datagram socket with `--unix`. It shares the servers' conventions: the
 * `listening on` line, `--allow`/`--deny`, SIGINT/SIGTERM/SIGHUP, the stats
 * on stop, a handle for `await using`.
 *
 * The notes' servers accept and then read and write a stream; UDP has no
 * connection, so the loop is the notes' `recv()`/`send()` pair alone, with
 * `recvfrom`'s address as the only thing that says who a datagram is from.
 * Where it departs from RFC 862 on purpose: an echo service reachable from
 * outside answers a forged source address, which makes it a reflection
 * (and, chained to another echo, a loop) target; `--rate-limit` bounds what
 * each source gets back, and the server warns when it binds a non-loopback
 * address without one.
 *
 * @example
 * ```ts
 * import { serveUdpEcho } from "./udp_echo.ts";
 *
 * await using server = await serveUdpEcho({ port: 0, log: () => {} });
 * const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
 * await client.send(new TextEncoder().encode("hi"), server.addr);
 * const [echo] = await client.receive(new Uint8Array(65536));
 * console.log(new TextDecoder().decode(echo)); // "hi"
 * client.close();
 * ```
 *
 * @module
 */

import { type AccessControl, AccessList, admits } from "../_access.ts";
import { classifyAcceptError } from "../_accept.ts";
import { PEER_IDLE_MS, PeerTable, SWEEP_MS, takeToken } from "./_udp_peers.ts";
import {
  CliError,
  type CommandSpec,
  describeError,
  isClosed,
  NOTES_PORT,
  parseCommandLine,
  parseInteger,
  runMain,
  shutdownSignal,
  SIGNALS_HELP,
  sleep,
} from "../_cli.ts";
import {
  type Addr,
  bindUnixPath,
  formatAddr,
  printListening,
} from "../_net.ts";
import {
  accessControl,
  parseServerEndpoint,
  SERVER_ENDPOINT_OPTIONS,
  type ServerEndpointOptions,
} from "../_net_options.ts";

/** The largest UDP payload over IPv4: 65,535 less the IP and UDP headers. */
export const MAX_UDP_PAYLOAD = 65_507;

/**
 * The receive buffer: larger than any datagram can be (a UDP length field
 * holds at most 65,535 with its 8-byte header, so 65,527 bytes over IPv6).
 * It must be: `receive(buf)` cuts a datagram longer than `buf` to its length
 * and says nothing (measured with Deno 2.9.6: 3,000 bytes into a 1,000-byte
 * buffer came back as 1,000), and `receive()` without one allocates a fresh
 * 65,507-byte buffer per datagram.
 */
const RECEIVE_BUFFER_SIZE = 65_536;

/**
 * Peers tracked at most (address and port each): what bounds the server's
 * memory under a flood from forged sources, to about 22 MB of heap
 * (docs/udp.md). A peer not heard from for
 * {@linkcode PEER_IDLE_MS} is forgotten; while the table is full of peers
 * heard from more recently, datagrams from new ones are echoed untracked,
 * counted in `untracked`, and with `--rate-limit` share one bucket.
 */
export const MAX_PEERS = 65_536;

export { PEER_IDLE_MS };

/** Where and how the UDP echo server listens, and its limits. */
export interface UdpEchoOptions
  extends Pick<ServerEndpointOptions, "hostname" | "port" | "allow" | "deny"> {
  /**
   * Listen on a Unix datagram socket at this path instead (Deno's
   * `unixpacket` transport, SOCK_DGRAM). A stale socket file is replaced;
   * the file is removed on stop. `allow` and `deny` do not apply.
   */
  unix?: string;
  /**
   * Datagrams a second each peer gets echoed (a token bucket holding one
   * second's worth); beyond it they are dropped and counted. 0 is off, the
   * default.
   */
  rateLimit?: number;
  /**
   * The most peers tracked at once (see {@linkcode MAX_PEERS}, the
   * default): what bounds the server's memory.
   */
  maxPeers?: number;
  /** Log notable events (first denial of a burst, send errors). Default `console.error`. */
  log?: (line: string) => void;
  /** Aborting it stops the server as `close()` does. */
  signal?: AbortSignal;
}

/** Counters of a UDP echo server, live. */
export interface UdpEchoStats {
  /** Datagrams received. */
  datagramsIn: number;
  /** Bytes in those datagrams. */
  bytesIn: number;
  /** Datagrams sent back. */
  datagramsOut: number;
  /** Bytes in those. */
  bytesOut: number;
  /**
   * Distinct peers (address and port) seen, refused ones included: exact
   * while at most
   * {@linkcode MAX_PEERS} are tracked at once; a peer forgotten after
   * {@linkcode PEER_IDLE_MS} that comes back counts again. Unix senders
   * that bound no path count as one.
   */
  peers: number;
  /** Echoes the system refused to send (an ICMP unreachable, a full buffer, no address to answer). */
  sendErrors: number;
  /** Failed receives (ENOBUFS and the like, or a Windows ICMP reset). */
  receiveErrors: number;
  /** Datagrams dropped by `--allow`/`--deny`. */
  denied: number;
  /** Datagrams dropped by `--rate-limit`. */
  rateLimited: number;
  /** Datagrams from peers not tracked because the peer table was full. */
  untracked: number;
}

/** A running UDP echo server, as {@linkcode serveUdpEcho} returns it. */
export interface UdpEchoServer<A extends Deno.Addr = Deno.NetAddr>
  extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked). */
  readonly addr: A;
  /** A snapshot of the counters. */
  stats(): UdpEchoStats;
  /**
   * Stops: an echo being sent goes out, then the socket closes. Resolves
   * with the final counters; safe to call more than once.
   */
  close(): Promise<UdpEchoStats>;
  /** Resolves with the final counters once the server has stopped. */
  readonly finished: Promise<UdpEchoStats>;
}

/** Loopback addresses: the server warns when it binds anything else unlimited. */
const LOOPBACK = AccessList.parse("127.0.0.0/8,::1", "loopback");

/** Counters of a server that has done nothing yet. */
function emptyStats(): UdpEchoStats {
  return {
    datagramsIn: 0,
    bytesIn: 0,
    datagramsOut: 0,
    bytesOut: 0,
    peers: 0,
    sendErrors: 0,
    receiveErrors: 0,
    denied: 0,
    rateLimited: 0,
    untracked: 0,
  };
}

/**
 * Binds a Unix datagram socket at `path`, replacing a stale socket file (one
 * that refuses a datagram: nobody receives there).
 */
function bindUnix(path: string): Promise<Deno.DatagramConn> {
  return bindUnixPath(
    path,
    () => Deno.listenDatagram({ transport: "unixpacket", path }),
    async () => {
      const probe = Deno.listenDatagram({ transport: "unixpacket" });
      try {
        await probe.send(new Uint8Array(0), { transport: "unixpacket", path });
        return true;
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionRefused) return false;
        throw error;
      } finally {
        probe.close();
      }
    },
    "receiving",
  );
}

/** Binds the socket the options describe; a failure is one line naming the address. */
async function bind(options: UdpEchoOptions): Promise<Deno.DatagramConn> {
  const where = options.unix ??
    formatAddr({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? NOTES_PORT,
    });
  try {
    if (options.unix !== undefined) return await bindUnix(options.unix);
    return Deno.listenDatagram({
      transport: "udp",
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? NOTES_PORT,
    });
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`Cannot listen on ${where}: ${describeError(error)}`, {
      cause: error,
    });
  }
}

/**
 * Starts the UDP echo server: one loop receives a datagram, checks its
 * sender against `allow`/`deny` and `rateLimit`, and sends it back whole.
 * An error sending to one peer is counted and the loop goes on; so is a
 * failed receive (backing off 100 ms when the system is short of buffers).
 *
 * Requires `--allow-net` (a Unix socket: `--allow-net=unix:PATH
 * --allow-read=PATH --allow-write=PATH`) and `--unstable-net` (deno.json
 * has it).
 *
 * @param options Where to listen, who may send, the per-peer rate limit.
 * @returns The running server; `close()` or `await using` stops it.
 * @throws {RangeError} If `rateLimit` is not a whole number from 0 to
 * 1,000,000, `maxPeers` not a whole number, or `unix` comes with `allow`
 * or `deny`.
 * @throws {CliError} If the address cannot be bound.
 *
 * @example
 * ```ts
 * import { serveUdpEcho } from "./udp_echo.ts";
 *
 * const server = await serveUdpEcho({ port: 0, rateLimit: 100, log: () => {} });
 * console.log(server.addr.port > 0); // true
 * console.log((await server.close()).datagramsIn); // 0
 * ```
 */
export function serveUdpEcho(
  options: UdpEchoOptions & { unix: string },
): Promise<UdpEchoServer<Deno.UnixAddr>>;
/** Over UDP: the server's address is a `Deno.NetAddr`. */
export function serveUdpEcho(
  options?: UdpEchoOptions,
): Promise<UdpEchoServer<Deno.NetAddr>>;
export async function serveUdpEcho(
  options: UdpEchoOptions = {},
): Promise<UdpEchoServer<Deno.Addr>> {
  const rate = options.rateLimit ?? 0;
  const maxPeers = options.maxPeers ?? MAX_PEERS;
  if (!Number.isSafeInteger(maxPeers) || maxPeers < 0) {
    throw new RangeError(
      `Cannot use maxPeers "${maxPeers}": expected a whole number of at least 0`,
    );
  }
  if (!Number.isSafeInteger(rate) || rate < 0 || rate > 1_000_000) {
    throw new RangeError(
      `Cannot use rateLimit "${rate}": expected a whole number from 0 to 1000000`,
    );
  }
  if (
    options.unix !== undefined &&
    (options.allow !== undefined || options.deny !== undefined)
  ) {
    throw new RangeError(
      "Cannot use allow or deny with unix: they take IP addresses",
    );
  }
  const access: AccessControl = accessControl(options);
  const checked = access.allow || access.deny ? access : undefined;
  const log = options.log ?? ((line: string) => console.error(line));
  const conn = await bind(options);
  const addr = conn.addr;
  const unixPath = options.unix;
  const unix = unixPath !== undefined;
  if (
    rate === 0 && "hostname" in addr && !LOOPBACK.has(addr.hostname)
  ) {
    log(
      `warning: echoing to anyone who can reach ${
        formatAddr(addr)
      } with no --rate-limit: a UDP echo answers forged source addresses (a reflection target)`,
    );
  }
  const stats = emptyStats();
  const peers = new PeerTable(
    maxPeers,
    rate,
    checked,
    unix ? "unixpacket" : "udp",
  );
  const sweep = setInterval(() => peers.sweep(), SWEEP_MS);
  Deno.unrefTimer(sweep);
  let stopping = false;
  let sending = false; // an echo is in flight: close after it

  async function loop(): Promise<void> {
    // One buffer for every datagram: the echo is sent from it before the
    // next receive overwrites it. Per datagram Deno's receive() still makes
    // its result (a pair, a view of this buffer, the sender's address
    // object and a promise); nothing else is allocated here.
    const buffer = new Uint8Array(RECEIVE_BUFFER_SIZE);
    let deniedBurst = 0; // datagrams denied since the last one admitted
    let sendBurst = 0; // send errors since the last echo that went out
    let receiveBurst = 0; // failed receives since the last that worked
    while (!stopping) {
      let datagram: Uint8Array;
      let from: Addr;
      try {
        [datagram, from] = await conn.receive(buffer) as [Uint8Array, Addr];
      } catch (error) {
        if (stopping || isClosed(error)) return;
        stats.receiveErrors++;
        // A resource is short (ENOBUFS, EMFILE and the like): back off
        // rather than spin, by the accept loop's reading of the same codes.
        const exhausted = classifyAcceptError(error) === "exhausted";
        if (receiveBurst++ === 0 || exhausted) {
          log(`receive failed: ${describeError(error)}; receiving on`);
        }
        if (exhausted) await sleep(100);
        continue;
      }
      receiveBurst = 0;
      stats.datagramsIn++;
      stats.bytesIn += datagram.length;
      // A Unix peer is its socket path (null when it bound none).
      const host = unix
        ? (from as Deno.UnixAddr).path ?? ""
        : (from as Deno.NetAddr).hostname;
      const port = unix ? 0 : (from as Deno.NetAddr).port;
      let peer = peers.get(host, port, stats);
      let admitted: boolean;
      let to: Addr;
      if (peer !== undefined) {
        admitted = peer.admitted;
        to = peer.to;
      } else {
        stats.untracked++;
        peer = peers.overflow;
        admitted = checked === undefined || admits(checked, host);
        to = from;
      }
      if (!admitted) {
        stats.denied++;
        if (deniedBurst++ === 0) {
          log(
            `access: denied ${
              formatAddr(from as Deno.NetAddr)
            } (--allow/--deny); the rest of this burst is counted`,
          );
        }
        continue;
      }
      if (deniedBurst > 1) {
        log(`access: ${deniedBurst} datagrams in all denied`);
      }
      deniedBurst = 0;
      if (rate > 0 && !takeToken(peer, rate)) {
        stats.rateLimited++;
        continue;
      }
      sending = true;
      try {
        stats.bytesOut += await conn.send(datagram, to);
        stats.datagramsOut++;
        if (sendBurst > 1) log(`send: ${sendBurst} echoes in all failed`);
        sendBurst = 0;
      } catch (error) {
        if (isClosed(error)) return;
        // One peer's trouble (ECONNREFUSED from its ICMP unreachable, a
        // full buffer, an unbound Unix peer): count it, serve the next.
        stats.sendErrors++;
        if (sendBurst++ === 0) {
          log(
            `send to ${
              host === ""
                ? "an unbound Unix socket"
                : formatAddr(from as Deno.NetAddr)
            } failed: ${
              describeError(error)
            }; the rest of this burst is counted`,
          );
        }
      } finally {
        sending = false;
      }
    }
  }

  const running = loop();
  const finished = (async () => {
    await running;
    clearInterval(sweep);
    try {
      conn.close();
    } catch {
      // Closed already, by stop().
    }
    if (unixPath !== undefined) {
      try {
        Deno.removeSync(unixPath);
      } catch {
        // Removed by someone else.
      }
    }
    return { ...stats };
  })();

  function stop(): Promise<UdpEchoStats> {
    if (!stopping) {
      stopping = true;
      // A receive waiting is ended by the close; an echo in flight goes out
      // first, and the loop then sees `stopping`.
      if (!sending) conn.close();
    }
    return finished;
  }

  const onAbort = () => void stop();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) void stop();
  finished.finally(() => options.signal?.removeEventListener("abort", onAbort));

  return {
    addr,
    stats: () => ({ ...stats }),
    finished,
    close: stop,
    [Symbol.asyncDispose]: () => stop().then(() => {}),
  };
}

/** Formats final counters as the one line the server prints when it stops. */
export function formatUdpStats(stats: UdpEchoStats): string {
  return `stats: ${stats.datagramsIn} datagrams in (${stats.bytesIn} bytes), ` +
    `${stats.datagramsOut} out (${stats.bytesOut} bytes), ${stats.peers} ` +
    `distinct peers, ${stats.sendErrors} send errors, ${stats.receiveErrors} ` +
    `receive errors, ${stats.denied} denied, ${stats.rateLimited} ` +
    `rate-limited, ${stats.untracked} untracked`;
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/** The endpoint options that apply to datagrams: no TLS (Deno has no DTLS). */
const UDP_ENDPOINT_KEYS = ["hostname", "port", "unix", "allow", "deny"];

const COMMAND: CommandSpec = {
  name: "servers/udp_echo.ts",
  summary:
    "The echo service over UDP (RFC 862): every datagram goes back to its sender whole and unchanged, up to 65,507 bytes (65,527 over IPv6), from one receive/send loop.",
  options: {
    ...Object.fromEntries(
      UDP_ENDPOINT_KEYS.map((key) => [key, SERVER_ENDPOINT_OPTIONS[key]!]),
    ),
    "rate-limit": {
      type: "string",
      default: "0",
      arg: "N",
      description:
        "Echo at most N datagrams a second to each peer (a token bucket of N); 0 is off.",
    },
  },
  epilog: `Examples:
  deno run --allow-net=127.0.0.1 servers/udp_echo.ts --port 0
  deno run --allow-net servers/udp_echo.ts --hostname 0.0.0.0 --rate-limit 50
  socat - UDP:127.0.0.1:${NOTES_PORT}

Deno checks --allow-net on every send, against the peer's address: with
--allow-net=127.0.0.1 only loopback peers get their echo (the others' fail
as send errors, logged), so a server that answers anyone needs --allow-net.

Why --rate-limit: UDP has no handshake, so anyone can send a datagram with a
forged source address and the echo goes to that address. An echo service
reachable from outside is a reflection and amplification target (pointed at
another echo service, a loop), which is why port 7 is blocked on most
networks. The server warns on stderr when it binds a non-loopback address
without a limit. At most ${MAX_PEERS} peers are tracked; one idle for ${
    PEER_IDLE_MS / 1000
  } s is
forgotten, and while the table is full new peers share one bucket.

--unix listens on a Unix datagram socket (Deno's "unixpacket", SOCK_DGRAM);
a client must bind a path of its own to get the echo, and the server needs
net and write access to that path too (Deno checks each send):
  deno run --allow-net=unix:/tmp/echo.sock,unix:/tmp/client.sock \\
    --allow-read=/tmp/echo.sock --allow-write=/tmp/echo.sock,/tmp/client.sock \\
    servers/udp_echo.ts --unix /tmp/echo.sock
  socat - UNIX-SENDTO:/tmp/echo.sock,bind=/tmp/client.sock
(or --allow-net --allow-read=PATH --allow-write=DIR for clients anywhere in
DIR). --allow and --deny take IP addresses and do not apply to it. No TLS:
Deno has no DTLS.

Prints "listening on HOST:PORT"; on SIGINT/SIGTERM lets an echo in flight go
out, closes the socket and prints the stats.
${SIGNALS_HELP}`,
};

/**
 * The command line: `deno run --allow-net servers/udp_echo.ts [options]`.
 * Returns the exit code.
 */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  const endpoint = await parseServerEndpoint(parsed.values);
  const rateLimit = parseInteger(
    parsed.values["rate-limit"],
    "--rate-limit",
    0,
    1_000_000,
  );
  const running: { server?: UdpEchoServer<Deno.Addr> } = {};
  using shutdown = shutdownSignal({
    onForce() {
      if (running.server) console.log(formatUdpStats(running.server.stats()));
    },
  });
  const server = running.server = await serveUdpEcho({
    ...endpoint,
    rateLimit,
    signal: shutdown.signal,
  });
  printListening(server.addr as Deno.NetAddr | Deno.UnixAddr);
  const stats = await server.finished;
  console.log(formatUdpStats(stats));
  return 0;
}

if (import.meta.main) runMain(main);
