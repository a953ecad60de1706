/**
 * The UDP echo server's peer table (servers/udp_echo.ts): who has sent
 * lately, by address and port, with what `--allow`/`--deny` made of them and
 * the tokens left in their `--rate-limit` bucket. It is what the server's
 * distinct-peer count stands on, and it bounds the server's memory under a
 * flood from forged sources.
 *
 * @module
 */

import { type AccessControl, admits } from "../_access.ts";

/**
 * How long a peer stays tracked after its last datagram, in ms. A token
 * bucket idle for a second is full again, so forgetting the peer loses no
 * rate-limit state; the rest of the time only keeps `peers` (distinct peers)
 * from counting a returning peer twice.
 */
export const PEER_IDLE_MS = 30_000;

/** How often idle peers are swept out, in ms: the peers' clock ticks. */
export const SWEEP_MS = 1_000;

/** What the server knows of one peer. */
export interface Peer {
  /** The sweep tick of its last datagram. */
  seen: number;
  /** Tokens left in its bucket (with `rateLimit`). */
  tokens: number;
  /** `performance.now()` of the last refill (with `rateLimit`). */
  refilled: number;
  /** Whether `--allow`/`--deny` admit it. */
  readonly admitted: boolean;
  /** Its address (or Unix socket path): the key of the port cache's hit. */
  readonly host: string;
  /** Its port (0 for a Unix peer). */
  readonly port: number;
  /**
   * Where its echoes go: a plain object made once for the peer, with
   * `host` and `port`. The sender's address object that Deno's `receive()`
   * returns has slow (dictionary) properties, and `send()` reads two of
   * them; this one's are fast (docs/udp.md).
   */
  readonly to: Deno.NetAddr | Deno.UnixAddr;
}

/**
 * The peers, by address then port: a lookup takes the strings Deno hands
 * over as they are, where one key of `address:port` would build a string
 * per datagram. In front of the maps, the peer last seen on each port: a
 * hit is an array index and one string compare, where the maps hash the
 * address string that Deno makes afresh for each datagram (11 ns against
 * 57-75 ns a lookup, measured with Deno 2.9.6; docs/udp.md). Peers that
 * share a port (behind different addresses) take turns in its slot and
 * fall back to the maps, so the cache never changes an answer or a count.
 */
export class PeerTable {
  /** Peers by IP address (or Unix socket path), then port. */
  readonly #byHost = new Map<string, Map<number, Peer>>();
  /** The peer last looked up on each port, if still tracked. */
  readonly #byPort: (Peer | undefined)[] = new Array(65_536).fill(undefined);
  /** Peers tracked now. */
  #size = 0;
  /** The most peers tracked at once. */
  readonly #max: number;
  /** A new peer's tokens: a full bucket. */
  readonly #burst: number;
  /** `--allow`/`--deny`, judged once per peer; undefined for everyone. */
  readonly #access: AccessControl | undefined;
  /** The clock of `Peer.seen`: advanced by each sweep. */
  tick = 0;
  /** The bucket that untracked peers share (its `to` is never used). */
  readonly overflow: Peer;
  /** The bound socket's transport: that of every peer's `to`. */
  readonly #transport: "udp" | "unixpacket";

  constructor(
    max: number,
    burst: number,
    access: AccessControl | undefined,
    transport: "udp" | "unixpacket" = "udp",
  ) {
    this.#max = max;
    this.#burst = burst;
    this.#access = access;
    this.#transport = transport;
    this.overflow = {
      seen: 0,
      tokens: burst,
      refilled: performance.now(),
      admitted: true,
      host: "",
      port: 0,
      to: { transport: "udp", hostname: "", port: 0 },
    };
  }

  /**
   * The peer at `host` and `port`, made (and counted in `counts.peers`) if
   * new; `undefined` if the table is full.
   */
  get(
    host: string,
    port: number,
    counts: { peers: number },
  ): Peer | undefined {
    const last = this.#byPort[port];
    if (last !== undefined && last.host === host) {
      last.seen = this.tick;
      return last;
    }
    let ports = this.#byHost.get(host);
    let peer = ports?.get(port);
    if (peer === undefined) {
      if (this.#size >= this.#max) return undefined;
      if (ports === undefined) {
        ports = new Map();
        this.#byHost.set(host, ports);
      }
      // The access lists compare 128-bit numbers made from the address
      // text, which allocates: judged once per peer, not per datagram.
      peer = {
        seen: this.tick,
        tokens: this.#burst,
        refilled: performance.now(),
        admitted: this.#access === undefined || admits(this.#access, host),
        host,
        port,
        to: this.#transport === "udp"
          ? { transport: "udp", hostname: host, port }
          : { transport: "unixpacket", path: host },
      };
      ports.set(port, peer);
      this.#size++;
      counts.peers++;
    }
    peer.seen = this.tick;
    this.#byPort[port] = peer;
    return peer;
  }

  /**
   * Forgets the peers not heard from for `PEER_IDLE_MS`: one pass over the
   * table a second (65,536 entries at most), where a timer per peer would
   * be re-armed by every datagram.
   */
  sweep(): void {
    this.tick++;
    const oldest = this.tick - PEER_IDLE_MS / SWEEP_MS;
    for (const [host, ports] of this.#byHost) {
      for (const [port, peer] of ports) {
        if (peer.seen <= oldest) {
          ports.delete(port);
          if (this.#byPort[port] === peer) this.#byPort[port] = undefined;
          this.#size--;
        }
      }
      if (ports.size === 0) this.#byHost.delete(host);
    }
  }
}

/**
 * Takes a token from `peer`'s bucket (`rate` a second, holding `rate`);
 * false when it is empty.
 */
export function takeToken(peer: Peer, rate: number): boolean {
  const now = performance.now();
  peer.tokens = Math.min(
    rate,
    peer.tokens + (now - peer.refilled) * rate / 1000,
  );
  peer.refilled = now;
  if (peer.tokens < 1) return false;
  peer.tokens--;
  return true;
}
