/**
 * Pieces the proxy's tests share (tests/proxy*_test.ts): reading exactly N
 * bytes, timing a round trip through an echo, and starting tools/proxy.ts
 * terminating TLS in front of a plain echo.
 *
 * @module
 */

import assert from "node:assert/strict";
import { firstDifference, Running, writeAll } from "./_helpers.ts";

/** The test certificates. */
export const TLS = "tests/fixtures/tls";

/** Reads exactly `n` bytes, or fewer at EOF. */
export async function readN(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const got = await conn.read(out.subarray(at));
    if (got === null) break;
    at += got;
  }
  return out.subarray(0, at);
}

/**
 * One round trip of `bytes` (default "ping\n") through an echo, checked
 * byte for byte; its time in ms.
 */
export async function roundTrip(
  conn: Deno.Conn,
  bytes: Uint8Array = new TextEncoder().encode("ping\n"),
): Promise<number> {
  const start = performance.now();
  await writeAll(conn, bytes);
  const back = await readN(conn, bytes.length);
  assert.equal(back.length, bytes.length, "EOF before the whole echo");
  assert.equal(firstDifference(back, bytes), -1);
  return performance.now() - start;
}

/** tools/proxy.ts terminating TLS (the test certificate) in front of `port`. */
export function tlsProxy(port: number): Running {
  return new Running("tools/proxy.ts", [
    "--tls",
    "--cert",
    `${TLS}/server.pem`,
    "--key",
    `${TLS}/server.key`,
    "--upstream",
    `127.0.0.1:${port}`,
  ]);
}
