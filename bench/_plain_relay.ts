/**
 * The plain Deno relay of the proxy's bench cases (bench/_proxy_cases.ts):
 * the least a relay on `Deno.Conn` can do, a read/write loop per direction
 * with one 16 KiB buffer each, EOF passed on with `closeWrite`, nothing
 * else (no toxics, no counters, no access lists). tools/proxy.ts with no
 * toxics is measured against it.
 *
 * Usage: deno run --allow-net=127.0.0.1 bench/_plain_relay.ts PORT UPSTREAM_PORT
 * (PORT 0 picks one); prints "listening on 127.0.0.1:PORT".
 *
 * @module
 */

/** Copies `src` to `dst` till EOF, then half-closes `dst`. */
async function pump(src: Deno.Conn, dst: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const n = await src.read(buffer);
    if (n === null) break;
    let done = 0;
    while (done < n) done += await dst.write(buffer.subarray(done, n));
  }
  await dst.closeWrite();
}

async function relay(client: Deno.TcpConn, upstreamPort: number) {
  let server: Deno.TcpConn | undefined;
  try {
    server = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
    client.setNoDelay(true);
    server.setNoDelay(true);
    await Promise.all([pump(client, server), pump(server, client)]);
  } catch {
    // A reset or refusal ends this connection only.
  } finally {
    for (const conn of [client, server]) {
      try {
        conn?.close();
      } catch {
        // Closed already.
      }
    }
  }
}

if (import.meta.main) {
  const [port, upstream] = Deno.args.map(Number);
  if (!Number.isInteger(port) || !Number.isInteger(upstream)) {
    console.error("usage: _plain_relay.ts PORT UPSTREAM_PORT");
    Deno.exit(2);
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: port! });
  console.log(`listening on 127.0.0.1:${listener.addr.port}`);
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  for await (const conn of listener) relay(conn, upstream!);
}
