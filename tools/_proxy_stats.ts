/**
 * The proxy's counters: what one proxy and each of its toxics counted
 * ({@linkcode ProxyStats}), made and copied here, and the one line the proxy
 * prints when it stops. Private to `tools/proxy.ts`, which re-exports the
 * types.
 *
 * @module
 */

import type { ToxicSpec, ToxicStream } from "./_toxics.ts";

/** Counters of one toxic, over every connection. */
export interface ToxicStats {
  /** The toxic's type, as `latency`. */
  type: string;
  /** The direction it acts on. */
  stream: ToxicStream;
  /** Connections it was applied to (by its toxicity). */
  applied: number;
  /** Bytes given to it. */
  bytesIn: number;
  /** Bytes it passed on (fewer when it drops: hang, timeout, limit_data). */
  bytesOut: number;
}

/** Counters of a proxy, live. */
export interface ProxyStats {
  /** Connections accepted. */
  connections: number;
  /** Connections open now (relaying or connecting). */
  active: number;
  /** Bytes read from clients (client to server, before the toxics). */
  bytesReceivedUpstream: number;
  /** Bytes read from the upstream (server to client, before the toxics). */
  bytesReceivedDownstream: number;
  /** Bytes written to the upstream (client to server). */
  bytesUpstream: number;
  /** Bytes written to clients (server to client). */
  bytesDownstream: number;
  /** Bytes read and not yet written, now, over all connections. */
  bytesHeld: number;
  /** The most bytes one direction of one connection has held at once. */
  peakHeld: number;
  /** Connects to the upstream that failed (refused, timed out, TLS). */
  upstreamFailures: number;
  /** Connections that ended in an error (a reset, a broken pipe). */
  errors: number;
  /** Connections refused by `allow`/`deny`. */
  denied: number;
  /** Failed `accept()` calls that backed off. */
  acceptErrors: number;
  /** Connections gone before they were accepted. */
  acceptAborted: number;
  /**
   * Each toxic's counters by its name, kept after it is removed (a toxic
   * added again under the name counts on).
   */
  toxics: Record<string, ToxicStats>;
}

/** Counters of a proxy that has counted nothing yet. */
export function newProxyStats(): ProxyStats {
  return {
    connections: 0,
    active: 0,
    bytesReceivedUpstream: 0,
    bytesReceivedDownstream: 0,
    bytesUpstream: 0,
    bytesDownstream: 0,
    bytesHeld: 0,
    peakHeld: 0,
    upstreamFailures: 0,
    errors: 0,
    denied: 0,
    acceptErrors: 0,
    acceptAborted: 0,
    toxics: {},
  };
}

/**
 * The counters of `toxic` in `stats`, made when first needed; a toxic
 * added again under a known name counts on.
 */
export function toxicStats(
  stats: ProxyStats,
  toxic: Required<ToxicSpec>,
): ToxicStats {
  const known = stats.toxics[toxic.name];
  if (known !== undefined) {
    known.type = toxic.type;
    known.stream = toxic.stream;
    return known;
  }
  return stats.toxics[toxic.name] = {
    type: toxic.type,
    stream: toxic.stream,
    applied: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
}

/** A copy of `stats` that later counting does not change. */
export function copyProxyStats(stats: ProxyStats): ProxyStats {
  return { ...stats, toxics: structuredClone(stats.toxics) };
}

/**
 * Formats counters as the one line the proxy prints when it stops: the
 * bytes written each way (after the toxics), the failures, the bytes read
 * each way (before them), then each toxic's connections and bytes in and
 * out.
 */
export function formatProxyStats(stats: ProxyStats): string {
  const toxics = Object.entries(stats.toxics)
    .map(([name, t]) =>
      `${name} (${t.type} ${t.stream}) on ${t.applied} connections, ` +
      `${t.bytesIn} bytes in, ${t.bytesOut} out`
    ).join("; ");
  return `stats: ${stats.connections} connections, ${stats.bytesUpstream} ` +
    `bytes upstream, ${stats.bytesDownstream} bytes downstream, ` +
    `${stats.upstreamFailures} upstream failures, ${stats.errors} errors, ` +
    `${stats.denied} denied, ${stats.acceptErrors} accept errors, ` +
    `${stats.acceptAborted} gone before accept, peak held ` +
    `${stats.peakHeld} bytes, read ${stats.bytesReceivedUpstream} ` +
    `upstream and ${stats.bytesReceivedDownstream} downstream; toxics: ` +
    `${toxics || "none"}`;
}
