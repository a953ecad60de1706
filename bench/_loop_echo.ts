/**
 * Baseline for `deno task bench`: the echo a Deno user writes by hand, one
 * `conn.read`/`conn.write` loop per connection with its own buffer. It is the
 * yardstick the bench's ratios are taken against. The same loop serves TCP,
 * TLS (`Deno.listenTls`: the handshake happens in the first read) and a Unix
 * socket, through the project's network layer (`_net.ts` `listen`).
 *
 * Usage: `deno run --allow-net=127.0.0.1 bench/_loop_echo.ts --port 0`, or
 * with `--tls --cert FILE --key FILE` (and `--allow-read` of both), or with
 * `--unix PATH` (and `--allow-net=unix:PATH --allow-read=PATH
 * --allow-write=PATH`); prints `listening on HOST:PORT` (or the path), stops
 * on SIGTERM, SIGINT or SIGHUP (the project's `shutdownSignal`). With
 * `--udp` (and `--unstable-net`) it is the UDP echo a user writes by hand
 * instead: one `Deno.listenDatagram` socket, a `receive`/`send` loop from
 * one buffer.
 *
 * @module
 */

import { parsePort, runMain, shutdownSignal, UsageError } from "../_cli.ts";
import {
  type Addr,
  listen,
  type ListenEndpoint,
  printListening,
} from "../_net.ts";

/**
 * Read buffer per connection: 16 KiB, what a user writing this loop by hand
 * would take; the bench's ratios (RSS per held connection too) are to it.
 */
const BUFFER = 16 * 1024;

async function echo(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(BUFFER);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // A reset peer (or a failed handshake) ends only its own connection.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * The UDP echo: receive a datagram into the one buffer, send it back, repeat
 * (the send is awaited before the next receive overwrites the buffer).
 */
async function udpEcho(conn: Deno.DatagramConn): Promise<void> {
  const buf = new Uint8Array(65_536);
  for (;;) {
    let datagram: Uint8Array, from: Deno.Addr;
    try {
      [datagram, from] = await conn.receive(buf);
    } catch {
      return; // closed by a signal
    }
    try {
      await conn.send(datagram, from);
    } catch {
      // One peer's ICMP unreachable stops nothing.
    }
  }
}

/** The value after option `name`, if it is given. */
function value(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) throw new UsageError(`${name} needs a value`);
  return v;
}

/** Where to listen, from `--port`, `--tls --cert --key` or `--unix`. */
async function endpointOf(args: string[]): Promise<ListenEndpoint> {
  const unix = value(args, "--unix");
  if (unix !== undefined) return { transport: "unix", path: unix };
  const port = parsePort(value(args, "--port") ?? "0");
  if (!args.includes("--tls")) {
    return { transport: "tcp", hostname: "127.0.0.1", port };
  }
  const cert = value(args, "--cert"), key = value(args, "--key");
  if (cert === undefined || key === undefined) {
    throw new UsageError("--tls needs --cert FILE and --key FILE");
  }
  return {
    transport: "tls",
    hostname: "127.0.0.1",
    port,
    tls: {
      cert: await Deno.readTextFile(cert),
      key: await Deno.readTextFile(key),
    },
  };
}

/** Serves until SIGTERM, SIGINT or SIGHUP. */
export async function main(args: string[]): Promise<number> {
  if (args.includes("--udp")) {
    const port = parsePort(value(args, "--port") ?? "0");
    const conn = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port,
    });
    // Signals first: a caller may send SIGTERM as soon as it reads the line.
    // Not disposed, as below.
    const shutdown = shutdownSignal();
    shutdown.signal.addEventListener("abort", () => conn.close());
    printListening(conn.addr as Addr);
    await udpEcho(conn);
    return 0;
  }
  using listener = await listen(await endpointOf(args));
  // Signals first: a caller may send SIGTERM as soon as it reads the line.
  // Not disposed (runMain exits anyway): disposed before the exit, SIGTERM
  // ended a few runs with 143 instead of 0 here on a busy machine (Deno
  // restores the default action once the last listener is gone,
  // denoland/deno#22757).
  const shutdown = shutdownSignal();
  shutdown.signal.addEventListener("abort", () => listener.close());
  printListening(listener.addr as Addr);
  try {
    for await (const conn of listener) echo(conn);
  } catch {
    // The listener was closed by a signal.
  }
  return 0;
}

if (import.meta.main) runMain(main);
