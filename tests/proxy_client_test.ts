/**
 * tools/proxy.ts's toxiproxy API driven by a real toxiproxy client from
 * npm, `toxiproxy-node-client` 4.1.0, unchanged (issue 13 item 5): a proxy
 * created, a toxic added, updated and removed, the list, enabled false,
 * populate and reset, each seen on a real connection through the proxy.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Latency,
  Toxiproxy,
  ToxiproxyError,
} from "npm:toxiproxy-node-client@4.1.0";
import { readAll, writeAll } from "./_helpers.ts";
import { serveSelectEcho } from "../servers/select_echo.ts";
import { serveProxyApi } from "../tools/_proxy_api.ts";
import { roundTrip } from "./_proxy_helpers.ts";

/** The port of a toxiproxy `listen` field, HOST:PORT. */
function portOf(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(":") + 1));
}

Deno.test("toxiproxy-node-client drives the proxy's API unchanged: create, toxics added, updated, listed and removed, enabled false, populate, reset; each seen on a connection", async () => {
  await using echo = await serveSelectEcho({ port: 0, log: () => {} });
  const lines: string[] = [];
  await using api = await serveProxyApi({
    port: 0,
    log: (line) => lines.push(line),
  });
  const toxiproxy = new Toxiproxy(`http://127.0.0.1:${api.addr.port}`);
  const upstream = `127.0.0.1:${echo.addr.port}`;

  assert.match(await toxiproxy.getVersion(), /^\{"version":"[\d.]+"\}$/);
  const proxy = await toxiproxy.createProxy({
    name: "echo",
    listen: "127.0.0.1:0",
    upstream,
  });
  assert.equal(proxy.name, "echo");
  assert.equal(proxy.upstream, upstream);
  assert.equal(proxy.enabled, true);
  const port = portOf(proxy.listen);
  assert.ok(port > 0, proxy.listen);
  await assert.rejects(
    toxiproxy.createProxy({ name: "echo", listen: "127.0.0.1:0", upstream }),
    (error: unknown) =>
      error instanceof ToxiproxyError && /409/.test(error.message),
  );

  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  assert.ok((await roundTrip(conn)) < 150);
  const toxic = await proxy.addToxic<Latency>({
    name: "lag",
    type: "latency",
    stream: "downstream",
    toxicity: 1,
    attributes: { latency: 300, jitter: 0 },
  });
  assert.deepEqual(toxic.toJson(), {
    name: "lag",
    type: "latency",
    stream: "downstream",
    toxicity: 1,
    attributes: { latency: 300, jitter: 0 },
  });
  const slow = await roundTrip(conn); // the connection already open
  assert.ok(slow >= 299 && slow < 600, `${slow}`);

  const updated = await toxic.update({
    ...toxic.toJson(),
    attributes: { latency: 100, jitter: 0 },
  });
  assert.equal(updated.attributes.latency, 100);
  assert.equal((await proxy.getToxic<Latency>("lag")).attributes.latency, 100);
  const faster = await roundTrip(conn);
  assert.ok(faster >= 99 && faster < 299, `${faster}`);
  const listed = await toxiproxy.getAll();
  assert.deepEqual(Object.keys(listed), ["echo"]);
  assert.equal(listed.echo!.listen, proxy.listen);
  const toxics = await toxiproxy.getApi().get(`${proxy.getPath()}/toxics`);
  assert.deepEqual(toxics.data, [updated.toJson()]);
  await updated.remove();
  assert.ok((await roundTrip(conn)) < 150);
  await assert.rejects(proxy.getToxic("lag"), /404/);

  // limit_data through the client: the connection ends after 3 bytes.
  await proxy.addToxic<{ bytes: number }>({
    name: "cap",
    type: "limit_data",
    stream: "downstream",
    toxicity: 1,
    attributes: { bytes: 3 },
  });
  {
    using capped = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(capped, new TextEncoder().encode("ping\n"));
    const got = await readAll(capped).catch(() => new Uint8Array());
    assert.equal(new TextDecoder().decode(got), "pin");
  }

  // enabled false: the open connection is cut and a new one refused.
  const down = await proxy.update({
    enabled: false,
    listen: proxy.listen,
    upstream,
  });
  assert.equal(down.enabled, false);
  assert.equal((await readAll(conn).catch(() => new Uint8Array())).length, 0);
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );

  // reset: enabled again, toxics gone.
  await toxiproxy.reset();
  const after = await toxiproxy.get("echo");
  assert.equal(after.enabled, true);
  await assert.rejects(after.getToxic("cap"), /404/);
  {
    using again = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.ok((await roundTrip(again)) < 150);
  }

  const populated = await toxiproxy.populate([
    { name: "second", listen: "127.0.0.1:0", upstream },
  ]);
  const second = populated.second!;
  {
    using other = await Deno.connect({
      hostname: "127.0.0.1",
      port: portOf(second.listen),
    });
    assert.ok((await roundTrip(other)) < 150);
  }
  await second.remove();
  await proxy.remove();
  assert.deepEqual(Object.keys(await toxiproxy.getAll()), []);
  await assert.rejects(toxiproxy.get("echo"), /404/);
  assert.deepEqual(lines, []);
});
