/**
 * The proxy's counters (tools/proxy.ts, item 4 of issue 13) with real
 * sockets: per proxy and per toxic, as `stats()` gives them, as the line
 * printed on stop reads, in the API's proxy JSON, and as `GET /metrics` in
 * Prometheus' text format (HELP and TYPE once a family, counters ending
 * `_total`, labels escaped).
 *
 * @module
 */

import assert from "node:assert/strict";
import { readAll, waitForStats, writeAll } from "./_helpers.ts";
import { serveSelectEcho } from "../servers/select_echo.ts";
import { formatProxyStats, serveProxy } from "../tools/proxy.ts";
import { serveProxyApi } from "../tools/_proxy_api.ts";
import { escapeLabel } from "../tools/_proxy_metrics.ts";
import { readN } from "./_proxy_helpers.ts";

Deno.test("proxy stats: bytes read and written each way, and per toxic its connections and bytes in and out (a hang drops what it takes)", async () => {
  await using echo = await serveSelectEcho({ port: 0, log: () => {} });
  await using proxy = await serveProxy({
    port: 0,
    upstream: { hostname: "127.0.0.1", port: echo.addr.port },
    toxics: [{ type: "latency", attributes: { latency: 20 } }],
    log: () => {},
  });
  const port = (proxy.addr as Deno.NetAddr).port;
  const data = new Uint8Array(10_000).fill(7);
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, data);
    assert.equal((await readN(conn, data.length)).length, data.length);
  }
  await waitForStats(proxy, (s) => s.active === 0, "the connection to end");
  let stats = proxy.stats();
  assert.equal(stats.connections, 1);
  assert.equal(stats.bytesReceivedUpstream, 10_000);
  assert.equal(stats.bytesUpstream, 10_000);
  assert.equal(stats.bytesReceivedDownstream, 10_000);
  assert.equal(stats.bytesDownstream, 10_000);
  assert.deepEqual(stats.toxics, {
    latency_downstream: {
      type: "latency",
      stream: "downstream",
      applied: 1,
      bytesIn: 10_000,
      bytesOut: 10_000,
    },
  });

  proxy.addToxic({ type: "hang", stream: "upstream" });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, data.subarray(0, 500));
  await waitForStats(
    proxy,
    (s) => s.toxics.hang_upstream?.bytesIn === 500,
    "the hang to take 500 bytes",
  );
  stats = proxy.stats();
  assert.deepEqual(stats.toxics.hang_upstream, {
    type: "hang",
    stream: "upstream",
    applied: 1,
    bytesIn: 500,
    bytesOut: 0,
  });
  assert.equal(stats.toxics.latency_downstream!.applied, 2);
  assert.equal(stats.bytesReceivedUpstream, 10_500);
  assert.equal(stats.bytesUpstream, 10_000); // the hang's 500 never went
  assert.match(
    formatProxyStats(stats),
    /^stats: 2 connections, 10000 bytes upstream, 10000 bytes downstream, .* read 10500 upstream and 10000 downstream; toxics: latency_downstream \(latency downstream\) on 2 connections, 10000 bytes in, 10000 out; hang_upstream \(hang upstream\) on 1 connections, 500 bytes in, 0 out$/,
  );
  // A removed toxic keeps its counters.
  proxy.removeToxic("hang_upstream");
  assert.equal(proxy.stats().toxics.hang_upstream!.bytesIn, 500);
});

Deno.test("proxy until(): resolves at the change it waits for (a connection open, then ended), at once when it holds already, and rejects when the proxy stops first", async () => {
  await using echo = await serveSelectEcho({ port: 0, log: () => {} });
  const proxy = await serveProxy({
    port: 0,
    upstream: { hostname: "127.0.0.1", port: echo.addr.port },
    log: () => {},
  });
  const port = (proxy.addr as Deno.NetAddr).port;
  assert.equal((await proxy.until((s) => s.active === 0)).connections, 0);
  const opened = proxy.until(
    (s) => s.active === 1,
    AbortSignal.timeout(10_000),
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  assert.equal((await opened).connections, 1);
  const ended = proxy.until(
    (s) => s.connections === 1 && s.active === 0,
    AbortSignal.timeout(10_000),
  );
  conn.close();
  assert.equal((await ended).active, 0);
  const never = proxy.until((s) => s.connections === 2);
  const stopped = await proxy.close();
  await assert.rejects(never, /stopped before the wait was over/);
  assert.equal(stopped.connections, 1);
  await assert.rejects(
    proxy.until(() => false),
    /stopped/,
  );
});

/**
 * Reads Prometheus' text format strictly: each family's HELP and TYPE come
 * once, before its samples; every sample is NAME{LABELS} VALUE of a family
 * declared; counters end in `_total`. Returns the samples by their text
 * before the value.
 */
function parseMetrics(text: string): Map<string, number> {
  assert.ok(text.endsWith("\n"), "a final newline");
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  const helped = new Set<string>();
  let current: string | undefined;
  const label = String.raw`[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"`;
  const sample = new RegExp(
    String
      .raw`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{${label}(?:,${label})*\})? (-?[0-9.e+]+)$`,
  );
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S/.exec(line);
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$/.exec(
      line,
    );
    if (help) {
      assert.ok(!helped.has(help[1]!), `HELP of ${help[1]} once`);
      helped.add(help[1]!);
      current = help[1];
    } else if (type) {
      assert.equal(type[1], current, "TYPE after its HELP");
      assert.ok(!types.has(type[1]!), `TYPE of ${type[1]} once`);
      types.set(type[1]!, type[2]!);
      if (type[2] === "counter") assert.match(type[1]!, /_total$/);
    } else {
      const m = sample.exec(line);
      assert.ok(m, `a sample line: ${JSON.stringify(line)}`);
      assert.equal(m[1], current, `${m[1]} under its own HELP and TYPE`);
      samples.set(`${m[1]}${m[2] ?? ""}`, Number(m[3]));
    }
  }
  return samples;
}

Deno.test("proxy API: GET /metrics in Prometheus text format with toxiproxy's byte counters, per-toxic counters, escaped labels; the proxy JSON carries stats", async () => {
  await using echo = await serveSelectEcho({ port: 0, log: () => {} });
  await using api = await serveProxyApi({ port: 0, log: () => {} });
  const base = `http://127.0.0.1:${api.addr.port}`;
  const upstream = `127.0.0.1:${echo.addr.port}`;
  const name = 'odd "name" \\ here';
  const created = await fetch(`${base}/proxies`, {
    method: "POST",
    body: JSON.stringify({ name, listen: "127.0.0.1:0", upstream }),
  });
  assert.equal(created.status, 201);
  const listen: string = (await created.json()).listen;
  const path = `${base}/proxies/${encodeURIComponent(name)}`;
  const toxic = await fetch(`${path}/toxics`, {
    method: "POST",
    body: JSON.stringify({
      name: "two\nlines",
      type: "limit_data",
      attributes: { bytes: 300 },
    }),
  });
  assert.equal(toxic.status, 200);
  await toxic.body?.cancel();

  const port = Number(listen.split(":")[1]);
  {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, new Uint8Array(100).fill(1));
    assert.equal((await readN(conn, 100)).length, 100);
    await writeAll(conn, new Uint8Array(400).fill(2));
    const rest = await readAll(conn).catch(() => new Uint8Array());
    assert.equal(rest.length, 200); // 300 in all, then the cut
  }
  await waitForStats(
    api.proxy(name)!,
    (s) => s.active === 0,
    "the connection to end",
  );

  const json = await (await fetch(path)).json();
  assert.equal(json.stats.connections, 1);
  assert.equal(json.stats.bytesDownstream, 300);
  assert.equal(json.stats.toxics["two\nlines"].bytesOut, 300);

  const response = await fetch(`${base}/metrics`);
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; version=0.0.4; charset=utf-8",
  );
  const samples = parseMetrics(await response.text());
  const proxyLabels = `proxy="odd \\"name\\" \\\\ here",listener="${listen}",` +
    `upstream="${upstream}"`;
  assert.equal(
    samples.get(
      `toxiproxy_proxy_sent_bytes_total{direction="downstream",${proxyLabels}}`,
    ),
    300,
  );
  const received = samples.get(
    `toxiproxy_proxy_received_bytes_total{direction="upstream",${proxyLabels}}`,
  );
  assert.ok(received !== undefined && received >= 100, `${received}`);
  assert.equal(
    samples.get(`toxiproxy_proxy_connections_total{${proxyLabels}}`),
    1,
  );
  assert.equal(samples.get(`toxiproxy_proxy_enabled{${proxyLabels}}`), 1);
  const toxicLabels = `proxy="odd \\"name\\" \\\\ here",toxic="two\\nlines",` +
    `type="limit_data",direction="downstream"`;
  assert.equal(samples.get(`toxiproxy_toxic_applied_total{${toxicLabels}}`), 1);
  assert.equal(
    samples.get(`toxiproxy_toxic_sent_bytes_total{${toxicLabels}}`),
    300,
  );
  const into = samples.get(
    `toxiproxy_toxic_received_bytes_total{${toxicLabels}}`,
  );
  assert.ok(into !== undefined && into >= 300, `${into}`);
});

Deno.test("proxy metrics: label values escape backslash, double quote and newline, and nothing else", () => {
  assert.equal(escapeLabel('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabel("127.0.0.1:80 é"), "127.0.0.1:80 é");
});
