/**
 * The proxy's counters (tools/proxy.ts) in Prometheus' text exposition
 * format (version 0.0.4), for `GET /metrics` of its toxiproxy API. The byte
 * counters carry toxiproxy's own names and labels
 * (`toxiproxy_proxy_received_bytes_total` and `..._sent_bytes_total` with
 * `direction`, `listener`, `proxy`, `upstream`), so dashboards made for
 * toxiproxy read them; the rest are beside them under the same prefix.
 *
 * Private to this package.
 *
 * @module
 */

import type { ProxyStats } from "./_proxy_stats.ts";

/** The content type of the text format, for the response header. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** One proxy as the metrics name it. */
export interface MeteredProxy {
  /** Its name in the API. */
  name: string;
  /** The address it listens on, HOST:PORT. */
  listen: string;
  /** Where it relays to, as given. */
  upstream: string;
  /** Whether it is listening. */
  enabled: boolean;
  /** Its counters now. */
  stats: ProxyStats;
}

/** A label value escaped as the format says: `\`, `"` and newline. */
export function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** A HELP text escaped: `\` and newline. */
function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

type Labels = Record<string, string>;

/** One metric family: its samples, written under one HELP and TYPE. */
class Family {
  readonly samples: [Labels, number][] = [];
  constructor(
    readonly name: string,
    readonly type: "counter" | "gauge",
    readonly help: string,
  ) {}

  /** Adds a sample. */
  add(labels: Labels, value: number): void {
    this.samples.push([labels, value]);
  }

  /** The family's lines, HELP and TYPE first. */
  format(): string {
    const lines = [
      `# HELP ${this.name} ${escapeHelp(this.help)}`,
      `# TYPE ${this.name} ${this.type}`,
    ];
    for (const [labels, value] of this.samples) {
      const text = Object.entries(labels)
        .map(([key, v]) => `${key}="${escapeLabel(v)}"`).join(",");
      lines.push(`${this.name}${text ? `{${text}}` : ""} ${value}`);
    }
    return lines.join("\n");
  }
}

/**
 * Formats the counters of `proxies` in the text exposition format: every
 * family once, with its `# HELP` and `# TYPE`, counters ending `_total`,
 * and a final newline.
 */
export function formatMetrics(proxies: readonly MeteredProxy[]): string {
  const family = (
    name: string,
    type: "counter" | "gauge",
    help: string,
  ) => new Family(`toxiproxy_${name}`, type, help);
  const received = family(
    "proxy_received_bytes_total",
    "counter",
    "Bytes the proxy read, by direction (upstream: from clients; downstream: from the server).",
  );
  const sent = family(
    "proxy_sent_bytes_total",
    "counter",
    "Bytes the proxy wrote after the toxics, by direction (upstream: to the server; downstream: to clients).",
  );
  const connections = family(
    "proxy_connections_total",
    "counter",
    "Connections accepted.",
  );
  const active = family(
    "proxy_active_connections",
    "gauge",
    "Connections open now.",
  );
  const failures = family(
    "proxy_upstream_failures_total",
    "counter",
    "Connects to the upstream that failed (refused, timed out, TLS).",
  );
  const errors = family(
    "proxy_errors_total",
    "counter",
    "Connections that ended in an error (a reset, a broken pipe).",
  );
  const denied = family(
    "proxy_denied_total",
    "counter",
    "Connections refused by the access lists.",
  );
  const enabled = family(
    "proxy_enabled",
    "gauge",
    "1 when the proxy is listening, 0 when disabled.",
  );
  const applied = family(
    "toxic_applied_total",
    "counter",
    "Connections a toxic was applied to (by its toxicity).",
  );
  const toxicIn = family(
    "toxic_received_bytes_total",
    "counter",
    "Bytes given to a toxic.",
  );
  const toxicOut = family(
    "toxic_sent_bytes_total",
    "counter",
    "Bytes a toxic passed on (fewer when it drops data).",
  );
  for (const { name, listen, upstream, enabled: on, stats } of proxies) {
    const base = { proxy: name, listener: listen, upstream };
    for (const direction of ["upstream", "downstream"] as const) {
      const labels = { direction, ...base };
      received.add(
        labels,
        direction === "upstream"
          ? stats.bytesReceivedUpstream
          : stats.bytesReceivedDownstream,
      );
      sent.add(
        labels,
        direction === "upstream" ? stats.bytesUpstream : stats.bytesDownstream,
      );
    }
    connections.add(base, stats.connections);
    active.add(base, stats.active);
    failures.add(base, stats.upstreamFailures);
    errors.add(base, stats.errors);
    denied.add(base, stats.denied);
    enabled.add(base, on ? 1 : 0);
    for (const [toxic, t] of Object.entries(stats.toxics)) {
      const labels = {
        proxy: name,
        toxic,
        type: t.type,
        direction: t.stream,
      };
      applied.add(labels, t.applied);
      toxicIn.add(labels, t.bytesIn);
      toxicOut.add(labels, t.bytesOut);
    }
  }
  return [
    received,
    sent,
    connections,
    active,
    failures,
    errors,
    denied,
    enabled,
    applied,
    toxicIn,
    toxicOut,
  ].map((f) => f.format()).join("\n") + "\n";
}
