/**
 * The proxy's relay of one connection: connect to the upstream, then one
 * read/write loop per direction through that direction's chain of toxics,
 * with a half-close passed on, a reset or error closing both sides, and
 * backpressure by a single buffer per direction. Private to
 * `tools/proxy.ts`.
 *
 * The relay is a read/write loop per direction with one buffer each
 * ({@linkcode PROXY_BUFFER_SIZE}): a chunk is written (through the toxics)
 * before the next read, so a side that does not read stops the proxy
 * reading the other, and a connection holds at most two buffers, 32 KiB, in
 * the proxy (the kernel's socket buffers hold more). `conn.readable` is not
 * used: it closes the whole connection at EOF (denoland/deno#22258), and a
 * half-close must pass on with the other direction still flowing.
 *
 * @module
 */

import { describeError } from "../_cli.ts";
import {
  type Addr,
  connect,
  type ConnectEndpoint,
  formatAddr,
} from "../_net.ts";
import {
  Chain,
  seededRandom,
  type Stage,
  type ToxicSpec,
  type ToxicStream,
} from "./_toxics.ts";
import type { ProxyStats, ToxicStats } from "./_proxy_stats.ts";

/**
 * The buffer of each direction of each connection, in bytes: the proxy
 * holds at most twice this per connection.
 */
export const PROXY_BUFFER_SIZE = 16 * 1024;

/** What every connection of one proxy shares with the relay. */
export interface RelayContext {
  /** Where each connection is relayed to. */
  readonly upstream: ConnectEndpoint;
  /** Give up a connect to the upstream after this many ms. */
  readonly connectTimeout: number;
  /** Aborts when the proxy stops: a connect in flight gives up quietly. */
  readonly stop: AbortSignal;
  /** The proxy's counters, live. */
  readonly stats: ProxyStats;
  /** Where log lines go. */
  readonly log: (line: string) => void;
  /** The counters of a toxic, made when first needed. */
  readonly tally: (toxic: Required<ToxicSpec>) => ToxicStats;
  /** Called after a toxic's counters change (the proxy's `until`). */
  readonly counted: () => void;
  /** Brings a chain up to the proxy's toxics now, counting those applied. */
  readonly applyToxics: (chain: Chain) => void;
  /** Every direction's chain, till its connection ends (toxics change live). */
  readonly chains: Set<Chain>;
  /** How to cut each open connection (both sides), for stop and disable. */
  readonly cuts: Set<() => void>;
  /** The seeded draw that seeds each connection's own, or undefined. */
  readonly random: (() => number) | undefined;
}

/**
 * Relays `client` (connection `id`) to the upstream until both directions
 * end: every byte in order both ways, a half-close (EOF) passed on with
 * `closeWrite` while the other direction flows, a reset or error on either
 * side closing both; an upstream that refuses or times out closes the
 * client and logs a line. Never throws.
 */
export async function relay(
  ctx: RelayContext,
  client: Deno.Conn,
  id: number,
): Promise<void> {
  const { stats, log, tally } = ctx;
  const remote = formatAddr(client.remoteAddr as Addr);
  let server: Deno.Conn;
  try {
    server = await connect(ctx.upstream, {
      timeout: ctx.connectTimeout,
      signal: ctx.stop,
    });
  } catch (error) {
    client.close();
    if (ctx.stop.aborted) return;
    stats.upstreamFailures++;
    log(
      `connection ${id} from ${remote}: ${
        describeError(error)
      }; closed the client`,
    );
    return;
  }
  for (const conn of [client, server]) {
    // As Go does for toxiproxy: a slicer's slices go out one by one.
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
  }
  const closed = new AbortController();
  const cut = () => {
    if (closed.signal.aborted) return;
    closed.abort();
    for (const conn of [client, server]) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  ctx.cuts.add(cut);
  const random = ctx.random === undefined
    ? Math.random
    : seededRandom(Math.floor(ctx.random() * 2 ** 32));

  async function pump(
    src: Deno.Conn,
    dst: Deno.Conn,
    stream: ToxicStream,
  ): Promise<void> {
    const upstream = stream === "upstream";
    const sink: Stage = {
      write: (chunk) => send(dst, chunk, stats, upstream),
      end: () => dst.closeWrite(),
    };
    const chain = new Chain(stream, sink, {
      random,
      cut,
      signal: closed.signal,
      fail,
      tally,
      counted: ctx.counted,
    });
    ctx.applyToxics(chain);
    ctx.chains.add(chain); // till the connection ends: an end held may go on
    mine.push(chain);
    try {
      await move(src, dst, chain, stats, upstream);
      await chain.head.end();
    } catch (error) {
      fail(error);
    }

    /** An error of this direction: counted, logged, both sides closed. */
    function fail(error: unknown): void {
      if (closed.signal.aborted) return; // cut: by the other side or a toxic
      stats.errors++;
      log(
        `connection ${id} from ${remote} (${stream}): ${
          describeError(error)
        }; closed both sides`,
      );
      cut();
    }
  }

  const mine: Chain[] = [];
  await Promise.all([
    pump(client, server, "upstream"),
    pump(server, client, "downstream"),
  ]);
  for (const chain of mine) ctx.chains.delete(chain);
  cut();
  ctx.cuts.delete(cut);
}

/**
 * Moves one direction till EOF (and throws what a read or write throws):
 * reads `src` into its one buffer, and passes each chunk through `chain`'s
 * toxics, or with none (the hot path) writes it whole to `dst` itself,
 * counting it read, held and written. It is the relay's loop, kept apart
 * from the set-up in `relay`: an `async` function saves and restores its
 * live values at every `await`, and this one has few. That, the named
 * counters and the kept view made the proxy 1.05-1.09x its former rate with
 * no toxics, level with the plain relay, and 1.04x with a latency toxic
 * (Deno 2.9.6; docs/proxy.md).
 */
async function move(
  src: Deno.Conn,
  dst: Deno.Conn,
  chain: Chain,
  stats: ProxyStats,
  upstream: boolean,
): Promise<void> {
  const buffer = new Uint8Array(PROXY_BUFFER_SIZE);
  // A view of the buffer's first n bytes is the same bytes for every chunk
  // of n: kept for the next one of that length (pingpong's every message).
  let view = buffer;
  for (;;) {
    const n = await src.read(buffer);
    if (n === null) return;
    if (upstream) stats.bytesReceivedUpstream += n;
    else stats.bytesReceivedDownstream += n;
    stats.bytesHeld += n;
    if (n > stats.peakHeld) stats.peakHeld = n;
    if (view.length !== n) view = buffer.subarray(0, n);
    try {
      if (chain.head === chain.sink) {
        // send()'s loop inline: no frame of its own on the hot path.
        let done = await dst.write(view);
        while (done < n) done += await dst.write(view.subarray(done));
        if (upstream) stats.bytesUpstream += n;
        else stats.bytesDownstream += n;
      } else await chain.head.write(view);
    } catch (error) {
      stats.bytesHeld -= n;
      throw error;
    }
    stats.bytesHeld -= n;
  }
}

/**
 * Writes `chunk` whole to `dst` and counts it as written: the last stage of
 * a chain with toxics, one `async` frame (`writeAll`'s loop, inline).
 * `move` has the same loop inline again, so that the hot path pays no
 * frame for it.
 */
async function send(
  dst: Deno.Conn,
  chunk: Uint8Array,
  stats: ProxyStats,
  upstream: boolean,
): Promise<void> {
  let done = await dst.write(chunk);
  while (done < chunk.length) done += await dst.write(chunk.subarray(done));
  if (upstream) stats.bytesUpstream += chunk.length;
  else stats.bytesDownstream += chunk.length;
}
