/**
 * The load generator's engine "deno": Deno.Conn (TCP, TLS or a Unix socket,
 * opened by `connect` of _net.ts), a writer and a reader per connection
 * sharing the window. Nothing is allocated per message but the promises
 * Deno's I/O needs: messages are prebuilt views, replies land in the flow's
 * buffer. Private to `tools/load.ts`.
 *
 * @module
 */

import { isClosed } from "../_cli.ts";
import { writeAll } from "../_net.ts";
import {
  consume,
  dueTime,
  type Flow,
  nextMessage,
  recordClose,
  recordFailure,
  type Run,
  windowOpen,
} from "./_load_flow.ts";

/** Deno engine: pingpong messages up to this size use the one-loop path. */
const PINGPONG_LIMIT = 64 * 1024;

/** Closes a Deno connection once. */
function conCloser(run: Run, flow: Flow, conn: Deno.Conn): () => void {
  return () => {
    if (flow.done) return;
    flow.done = true;
    run.tally.closed(flow.active);
    try {
      conn.close();
    } catch {
      // Already closed by a failed operation: nothing left to release.
    }
    const wake = flow.wake;
    flow.wake = undefined;
    wake?.();
  };
}

/** Drives one active Deno connection until the run ends. */
export async function driveConn(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  // Only a TCP connection has the setting (a TlsConn has none, nor a Unix
  // socket).
  if (run.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
  flow.close = conCloser(run, flow, conn);
  await run.started;
  try {
    if (run.window === run.size && run.size <= PINGPONG_LIMIT) {
      await connPingpong(run, flow, conn);
    } else {
      await Promise.all([
        connWriter(run, flow, conn),
        connReader(run, flow, conn),
      ]);
    }
  } catch (error) {
    recordFailure(run, flow, error);
  }
  flow.close();
}

/**
 * Pingpong of a small message in one loop: write it, read until its echo is
 * all back. The writer/reader pair would cost a wake-up promise per message;
 * a message this small fits the socket buffers, so writing first cannot
 * deadlock against the server's echo.
 */
async function connPingpong(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  while (!run.stop.aborted && !flow.done) {
    const start = dueTime(run, flow);
    if (start < 0) {
      await run.pacer.wait(flow.due);
      continue;
    }
    const message = nextMessage(run, flow, start);
    const n = await conn.write(message);
    if (n < message.length) await writeAll(conn, message.subarray(n));
    while (flow.received < flow.sent) {
      const at = flow.offset & 3;
      const got = await conn.read(flow.recvViews[at]!);
      if (got === null) {
        recordClose(run, flow, false);
        return;
      }
      consume(run, flow, at, got);
    }
  }
}

/** Writes messages while the window is open and they are due. */
async function connWriter(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  while (!run.stop.aborted && !flow.done) {
    if (!windowOpen(run, flow)) {
      await new Promise<void>((resolve) => flow.wake = resolve);
      continue;
    }
    const start = dueTime(run, flow);
    if (start < 0) {
      await run.pacer.wait(flow.due);
      continue;
    }
    await writeAll(conn, nextMessage(run, flow, start));
  }
  // Nothing more will be written. If every byte is back, the reader waits on
  // a read that will never complete: closing ends it.
  if (flow.received >= flow.sent) flow.close();
}

/** Reads and checks the echo until every byte sent is back. */
async function connReader(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  while (!flow.done) {
    // Read at the alignment of the expected bytes so they compare by words.
    const at = flow.offset & 3;
    let n: number | null;
    try {
      n = await conn.read(flow.recvViews[at]!);
    } catch (error) {
      if (flow.done && isClosed(error)) return;
      throw error;
    }
    if (n === null) {
      if (!(run.stop.aborted && flow.received >= flow.sent)) {
        recordClose(run, flow, false);
      }
      flow.close();
      return;
    }
    consume(run, flow, at, n);
    const wake = flow.wake;
    if (wake !== undefined && windowOpen(run, flow)) {
      flow.wake = undefined;
      wake();
    }
    if (run.stop.aborted && flow.received >= flow.sent) flow.close();
  }
}

/** Holds an idle Deno connection, noticing if the server closes or writes. */
export async function holdConn(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  flow.close = conCloser(run, flow, conn);
  try {
    const n = await conn.read(flow.recv);
    if (n === null) {
      if (!flow.done) recordClose(run, flow, true);
    } else {
      run.tally.extraBytes += n;
      run.tally.note("the server wrote on an idle connection");
    }
  } catch (error) {
    if (!(flow.done && isClosed(error))) recordFailure(run, flow, error);
  }
  flow.close();
}
