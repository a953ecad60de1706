/**
 * tools/proxy.ts's HTTP API (tools/_proxy_api.ts), driven with fetch as
 * toxiproxy's clients drive toxiproxy: routes, JSON shapes, status codes,
 * toxics on a live connection, enabled: false and POST /reset.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readAll, Running } from "./_helpers.ts";
import { serveSelectEcho } from "../servers/select_echo.ts";
import { serveProxyApi } from "../tools/_proxy_api.ts";
import { roundTrip } from "./_proxy_helpers.ts";

Deno.test("proxy API: toxiproxy's routes, shapes and status codes with fetch; toxics on a live connection; enabled false and /reset", async () => {
  await using echo = await serveSelectEcho({ port: 0, log: () => {} });
  const lines: string[] = [];
  await using api = await serveProxyApi({
    port: 0,
    log: (line) => lines.push(line),
  });
  const base = `http://127.0.0.1:${api.addr.port}`;
  async function call(method: string, path: string, body?: unknown) {
    const response = await fetch(`${base}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }
  const upstream = `127.0.0.1:${echo.addr.port}`;

  assert.deepEqual(await call("GET", "/version"), {
    status: 200,
    body: { version: "0.1.0" },
  });
  const created = await call("POST", "/proxies", {
    name: "echo",
    listen: "127.0.0.1:0",
    upstream,
  });
  assert.equal(created.status, 201);
  const port = Number(created.body.listen.split(":")[1]);
  assert.ok(port > 0);
  const { stats: createdStats, ...createdShape } = created.body;
  assert.equal(createdStats.connections, 0); // beside toxiproxy's fields
  assert.deepEqual(createdShape, {
    name: "echo",
    listen: `127.0.0.1:${port}`,
    upstream,
    enabled: true,
    toxics: [],
  });
  assert.deepEqual(
    await call("POST", "/proxies", { name: "echo", upstream }),
    { status: 409, body: { error: "proxy already exists", status: 409 } },
  );
  assert.deepEqual(await call("POST", "/proxies", { upstream }), {
    status: 400,
    body: { error: "missing required field: name", status: 400 },
  });
  const bad = await call("POST", "/proxies", "{not json");
  assert.equal(bad.status, 400);
  assert.match(bad.body.error, /^bad request body: /);
  assert.deepEqual(await call("GET", "/proxies"), {
    status: 200,
    body: { echo: created.body },
  });
  assert.deepEqual(await call("GET", "/proxies/nope"), {
    status: 404,
    body: { error: "proxy not found", status: 404 },
  });

  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  assert.ok((await roundTrip(conn)) < 150);
  const toxic = await call("POST", "/proxies/echo/toxics", {
    type: "latency",
    attributes: { latency: 300 },
  });
  assert.deepEqual(toxic, {
    status: 200,
    body: {
      type: "latency",
      name: "latency_downstream",
      stream: "downstream",
      toxicity: 1,
      attributes: { latency: 300, jitter: 0 },
    },
  });
  const slow = await roundTrip(conn); // the connection already open
  assert.ok(slow >= 299 && slow < 600, `${slow}`);
  assert.equal(
    (await call("POST", "/proxies/echo/toxics", { type: "latency" })).status,
    409,
  );
  const unknown = await call("POST", "/proxies/echo/toxics", { type: "nope" });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.error, /^invalid toxic type/);
  const badStream = await call("POST", "/proxies/echo/toxics", {
    type: "latency",
    stream: "sideways",
  });
  assert.equal(badStream.status, 400);
  assert.equal(
    (await call("POST", "/proxies/echo/toxics", {
      type: "bandwidth",
      attributes: { rate: "fast" },
    })).status,
    400,
  );
  const updated = await call(
    "POST",
    "/proxies/echo/toxics/latency_downstream",
    { attributes: { latency: 100 } },
  );
  assert.equal(updated.body.attributes.latency, 100);
  const faster = await roundTrip(conn);
  assert.ok(faster >= 99 && faster < 299, `${faster}`);
  assert.deepEqual(
    (await call("GET", "/proxies/echo/toxics")).body,
    [updated.body],
  );
  assert.equal(
    (await call("DELETE", "/proxies/echo/toxics/latency_downstream")).status,
    204,
  );
  assert.deepEqual(
    await call("GET", "/proxies/echo/toxics/latency_downstream"),
    { status: 404, body: { error: "toxic not found", status: 404 } },
  );
  assert.ok((await roundTrip(conn)) < 150);

  // enabled: false cuts the open connection and refuses new ones.
  const disabled = await call("POST", "/proxies/echo", { enabled: false });
  assert.equal(disabled.body.enabled, false);
  assert.equal((await readAll(conn).catch(() => new Uint8Array())).length, 0);
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );
  await call("POST", "/proxies/echo/toxics", { type: "hang" });
  assert.equal((await call("POST", "/reset")).status, 204);
  const reset = await call("GET", "/proxies/echo");
  assert.equal(reset.body.enabled, true);
  assert.deepEqual(reset.body.toxics, []);
  using again = await Deno.connect({ hostname: "127.0.0.1", port });
  assert.ok((await roundTrip(again)) < 150);
  again.close();

  const populated = await call("POST", "/populate", [
    { name: "second", listen: "127.0.0.1:0", upstream },
  ]);
  assert.equal(populated.status, 201);
  assert.equal(populated.body.proxies[0].name, "second");
  assert.equal((await call("DELETE", "/proxies/echo")).status, 204);
  assert.deepEqual(Object.keys((await call("GET", "/proxies")).body), [
    "second",
  ]);
  assert.equal((await call("DELETE", "/proxies/echo")).status, 404);
  assert.deepEqual(lines, []);
});

Deno.test("tools/proxy.ts --api 127.0.0.1:0 without --upstream: a proxy created over HTTP relays; SIGTERM prints its stats", async () => {
  await using echo = await serveSelectEcho({ port: 0, log: () => {} });
  await using proc = new Running("tools/proxy.ts", ["--api", "127.0.0.1:0"]);
  const apiPort = await proc.port();
  const response = await fetch(`http://127.0.0.1:${apiPort}/proxies`, {
    method: "POST",
    body: JSON.stringify({
      name: "db",
      listen: "127.0.0.1:0",
      upstream: `127.0.0.1:${echo.addr.port}`,
    }),
  });
  assert.equal(response.status, 201);
  const port = Number((await response.json()).listen.split(":")[1]);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await roundTrip(conn);
  conn.close();
  const out = await proc.stop("SIGTERM");
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^db: stats: 1 connections, 5 bytes upstream/m);
  assert.match(out.stderr, /toxiproxy API on http:\/\/127\.0\.0\.1:\d+/);
});
