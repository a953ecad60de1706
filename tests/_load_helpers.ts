/**
 * What the load generator's tests share: running it for its JSON report,
 * and echo servers in this process that misbehave on purpose.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runScript } from "./_helpers.ts";
import type { LoadReport } from "../tools/load.ts";

export const LOAD = "tools/load.ts";

/** Every field of the JSON report, so a missing one fails the test. */
export const REPORT_FIELDS = [
  "target",
  "transport",
  "mode",
  "connections",
  "idle",
  "size",
  "window",
  "rate",
  "engine",
  "connected",
  "connectMs",
  "connectRate",
  "connectsPerSecond",
  "connect",
  "connectFailures",
  "resets",
  "closedByServer",
  "otherErrors",
  "seconds",
  "messages",
  "messagesPerSecond",
  "bytesSent",
  "bytesEchoed",
  "megabytesPerSecond",
  "mismatchedBytes",
  "missingBytes",
  "extraBytes",
  "latency",
  "cpu",
  "intervals",
  "errors",
  "ended",
  "interrupted",
  "reason",
  "ok",
];

/** Runs the load tool with `--json` and returns its exit code and report. */
export async function load(
  args: string[],
): Promise<{ code: number; report: LoadReport; stderr: string }> {
  const out = await runScript(LOAD, ["--json", "--quiet", ...args]);
  let report: LoadReport;
  try {
    report = JSON.parse(out.stdout);
  } catch {
    throw new Error(
      `No JSON from load.ts (exit ${out.code}): ${out.stdout} ${out.stderr}`,
    );
  }
  return { code: out.code, report, stderr: out.stderr };
}

/**
 * A misbehaving server in this process: `handle` gets each connection and
 * its number; the server closes every connection when disposed.
 */
export function testServer(
  handle: (conn: Deno.TcpConn, n: number) => Promise<void>,
): { port: number } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    let n = 0;
    try {
      for await (const conn of listener) {
        conns.add(conn);
        tasks.push(
          handle(conn, n++).catch(() => {}).finally(() => {
            conns.delete(conn);
            try {
              conn.close();
            } catch {
              // closed by the handler
            }
          }),
        );
      }
    } catch {
      // listener closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
      await Promise.all(tasks);
    },
  };
}

/** Echoes with a plain read/write loop; `tamper` may change each chunk. */
export async function echoLoop(
  conn: Deno.TcpConn,
  tamper?: (
    buf: Uint8Array,
    n: number,
    offset: number,
  ) => void | Promise<void>,
): Promise<void> {
  const buf = new Uint8Array(16 * 1024);
  let offset = 0;
  while (true) {
    const n = await conn.read(buf);
    if (n === null) return;
    await tamper?.(buf, n, offset);
    offset += n;
    let done = 0;
    while (done < n) done += await conn.write(buf.subarray(done, n));
  }
}

/** Reads exactly `n` bytes. */
export async function readExactly(
  conn: Deno.TcpConn,
  n: number,
): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(buf.subarray(got));
    if (r === null) throw new Error("EOF");
    got += r;
  }
  return buf;
}

/** Every number in `value` with more decimals than `digits`. */
export function overPrecise(value: unknown, digits: number, at = ""): string[] {
  if (typeof value === "number") {
    const decimals = String(value).split(".")[1] ?? "";
    return decimals.length > digits ? [`${at}=${value}`] : [];
  }
  if (value !== null && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) =>
      overPrecise(v, digits, `${at}.${k}`)
    );
  }
  return [];
}

/** One line of `--json-stream`. */
export interface StreamEvent {
  /** `interval`, then `end`. */
  event: string;
  // deno-lint-ignore no-explicit-any
  data: any;
}

/**
 * Runs load.ts with `--json-stream` and `args`, checks it exits 0 and
 * prints `intervals` interval lines and then the end, and returns them.
 */
export async function jsonStream(
  args: string[],
  intervals: number,
): Promise<StreamEvent[]> {
  const out = await runScript(LOAD, [...args, "--json-stream"]);
  assert.equal(out.code, 0, out.stderr);
  const events: StreamEvent[] = out.stdout.trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.deepEqual(
    events.map((e) => e.event),
    [...Array(intervals).fill("interval"), "end"],
    out.stdout,
  );
  return events;
}
