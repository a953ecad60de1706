// TLS handshakes per second, for `deno task bench`: CLIENTS loops each open a
// TLS connection, wait for the handshake, close it and wait for the close,
// then open the next, until SECONDS pass or MAX handshakes are done. Every
// connection is a full handshake (no session is offered for resumption; the
// report counts any the server resumed). Run by `node` (Deno runs it too,
// through node:tls, when node is missing).
//
// Usage: node bench/_handshake_load.mjs --port PORT --ca FILE
//   [--host 127.0.0.1] [--clients 20] [--seconds 5] [--max 200000]
//   [--timeout 5]
// Prints one JSON object: handshakes, seconds, handshakesPerSecond, connect
// (the time from the connect call to the end of the handshake: p50, p90,
// p99, max in ms), failures and the first failure's message, resumed, and
// the client's own CPU in percent of one core.
import fs from "node:fs";
import tls from "node:tls";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    ca: { type: "string" },
    clients: { type: "string", default: "20" },
    seconds: { type: "string", default: "5" },
    max: { type: "string", default: "200000" },
    timeout: { type: "string", default: "5" },
  },
});
const port = Number(values.port);
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const max = Number(values.max);
const timeout = Number(values.timeout) * 1000;
if (
  !(port > 0 && port < 65536) || !(clients >= 1 && clients <= 1000) ||
  !(seconds > 0 && seconds <= 600) || !(max >= 1 && max <= 10_000_000) ||
  !(timeout > 0) || values.ca === undefined
) {
  console.error(
    "error: expected --port 1-65535, --ca FILE, --clients 1-1000, --seconds 0-600, --max 1-10000000",
  );
  process.exit(2);
}
// One context for every connection: the CA is parsed once, as a client that
// reconnects would.
const context = tls.createSecureContext({ ca: fs.readFileSync(values.ca) });

/** Connect times in ms, one per handshake (at most `max`). */
const times = new Float64Array(max);
let done = 0;
let started = 0;
let failures = 0;
let resumed = 0;
let firstFailure;
const t0 = performance.now();
const deadline = t0 + seconds * 1000;
const cpu0 = process.cpuUsage();

/** One connection: handshake, close, and wait for the close. */
function once() {
  return new Promise((resolve) => {
    const begin = performance.now();
    let handshaken = false;
    const socket = tls.connect({
      host: values.host,
      port,
      secureContext: context,
    });
    const timer = setTimeout(
      () => socket.destroy(new Error("timed out")),
      timeout,
    );
    socket.setNoDelay(true);
    socket.on("secureConnect", () => {
      handshaken = true;
      times[done++] = performance.now() - begin;
      if (socket.isSessionReused()) resumed++;
      socket.end();
    });
    // Session tickets and the peer's close arrive as data and end.
    socket.resume();
    socket.on("error", (error) => {
      if (!handshaken) {
        failures++;
        firstFailure ??= error.message;
      }
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function client() {
  while (performance.now() < deadline && started < max) {
    started++;
    await once();
  }
}

await Promise.all(Array.from({ length: clients }, client));
const elapsed = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const sorted = times.subarray(0, done).sort();
const at = (q) =>
  done === 0
    ? 0
    : Math.round(sorted[Math.min(done - 1, Math.ceil(q * done) - 1)] * 1000) /
      1000;
console.log(JSON.stringify({
  handshakes: done,
  clients,
  seconds: Math.round(elapsed * 1000) / 1000,
  handshakesPerSecond: Math.round(done / elapsed),
  connect: { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) },
  failures,
  firstFailure,
  resumed,
  cpuPercent: Math.round((cpu.user + cpu.system) / 1000 / (elapsed * 10)),
}));
