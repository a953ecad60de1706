/**
 * The load generator's engine "net": `node:net` (and `node:tls`) sockets.
 * Deno's node:net serves many busy connections fairly; Deno.Conn, past about
 * 128 busy connections on one event loop, serves some and starves others for
 * seconds (FAIR_LIMIT in load.ts), and a load generator that starves its own
 * connections reports its own stalls as the server's. The price is a Buffer
 * the runtime allocates per read, which is copied into the flow's buffer at
 * once. Private to `tools/load.ts`.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import {
  bareHost,
  type ConnectEndpoint,
  ConnectError,
  formatEndpoint,
} from "../_net.ts";
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

/**
 * Opens a `node:net` socket to `endpoint` within `timeout` ms: `net.connect`
 * over TCP and to a Unix socket, `tls.connect` over TLS, ready once the
 * handshake is done (and the server's certificate verified as `connect` of
 * `_net.ts` verifies it: `caCerts` beside the default roots, against
 * `serverName` or else the host). The one place the `net` engine connects.
 */
export function connectNode(
  endpoint: ConnectEndpoint,
  timeout: number,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    let ready = "connect";
    if (endpoint.transport === "unix") {
      socket = net.connect({ path: endpoint.path });
    } else if (endpoint.transport === "tcp") {
      socket = net.connect({
        host: bareHost(endpoint.hostname),
        port: endpoint.port,
      });
    } else {
      const host = bareHost(endpoint.hostname);
      const t = endpoint.tls;
      // SNI carries names only (RFC 6066); an address is verified all the same.
      const servername = t.serverName ?? (net.isIP(host) ? undefined : host);
      socket = tls.connect({
        host,
        port: endpoint.port,
        ...(servername === undefined ? {} : { servername }),
        // Deno's node:tls hands `ca` to Deno.startTls as caCerts: trusted
        // beside the default roots, as `connect` of _net.ts trusts them.
        ...(t.caCerts ? { ca: t.caCerts } : {}),
        ...(t.cert === undefined ? {} : { cert: t.cert, key: t.key }),
        ...(t.alpn ? { ALPNProtocols: t.alpn } : {}),
      });
      ready = "secureConnect";
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new ConnectError(
          formatEndpoint(endpoint),
          `timed out after ${timeout / 1000} s`,
        ),
      );
    }, timeout);
    const onError = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once("error", onError);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.off("error", onError);
      // A TLS alert read with the handshake's last bytes is emitted before
      // the engine's listeners are on (they are a microtask away): without
      // a listener it would be thrown. The engine finds it in `errored`.
      socket.on("error", ignore);
      resolve(socket);
    });
  });
}

/** An error listener that leaves the error to `socket.errored`. */
function ignore(): void {}

/**
 * Counts how `socket` ends, if not by `flow.close()`: an error, or the
 * server's close; then `finish`es the flow. Returns whether it had failed
 * already, before its engine took it (then it is counted and finished).
 */
function watchEnd(
  run: Run,
  flow: Flow,
  socket: net.Socket,
  finish: () => void,
): boolean {
  socket.on("error", (error: Error) => {
    recordFailure(run, flow, error);
    finish();
  });
  socket.on("close", () => {
    if (!flow.done) {
      recordClose(run, flow, !flow.active);
      finish();
    }
  });
  if (socket.errored === null) return false;
  recordFailure(run, flow, socket.errored);
  finish();
  return true;
}

/** Drives one active `node:net` connection until the run ends. */
export function driveNet(
  run: Run,
  flow: Flow,
  socket: net.Socket,
): Promise<void> {
  return new Promise((resolve) => {
    if (run.transport !== "unix") socket.setNoDelay(true);
    let blocked = false; // the socket's buffer is full: wait for "drain"
    let waiting = false; // open loop: the pacer will call pump near the due time
    const finish = () => {
      if (flow.done) return;
      flow.done = true;
      run.tally.closed(flow.active);
      run.stop.removeEventListener("abort", onStop);
      socket.destroy();
      resolve();
    };
    flow.close = finish;
    const pump = () => {
      waiting = false;
      if (flow.done) return;
      while (!blocked && !run.stop.aborted && windowOpen(run, flow)) {
        const start = dueTime(run, flow);
        if (start < 0) {
          waiting = true;
          run.pacer.at(flow.due, pump);
          return;
        }
        blocked = !socket.write(nextMessage(run, flow, start));
      }
      if (run.stop.aborted && flow.received >= flow.sent) finish();
    };
    const onStop = () => pump();
    run.stop.addEventListener("abort", onStop, { once: true });
    // Until traffic starts, only failures are watched.
    let live = false;
    socket.on("drain", () => {
      blocked = false;
      if (live && !waiting) pump();
    });
    socket.on("data", (chunk: Uint8Array) => {
      for (let i = 0; i < chunk.length;) {
        const take = Math.min(chunk.length - i, flow.readLength);
        const at = flow.offset & 3;
        flow.recv.set(
          take === chunk.length ? chunk : chunk.subarray(i, i + take),
          at,
        );
        consume(run, flow, at, take);
        i += take;
      }
      if (live && !waiting) pump();
    });
    if (watchEnd(run, flow, socket, finish)) return;
    run.started.then(() => {
      live = true;
      if (!flow.done) pump();
    });
  });
}

/** Holds an idle `node:net` connection until `flow.close()`. */
export function holdNet(
  run: Run,
  flow: Flow,
  socket: net.Socket,
): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => {
      if (flow.done) return;
      flow.done = true;
      run.tally.closed(flow.active);
      socket.destroy();
      resolve();
    };
    flow.close = finish;
    socket.on("data", (chunk: Uint8Array) => {
      run.tally.extraBytes += chunk.length;
      run.tally.note("the server wrote on an idle connection");
    });
    watchEnd(run, flow, socket, finish);
  });
}
