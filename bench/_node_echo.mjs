// Baseline for `deno task bench`: Node's echo, `socket.pipe(socket)`, run by
// `node` (not Deno): `net` over TCP or a Unix socket, `tls` over TLS.
// Usage: node bench/_node_echo.mjs PORT (0 picks a free port), or
// node bench/_node_echo.mjs PORT --tls --cert FILE --key FILE, or
// node bench/_node_echo.mjs --unix PATH, or node bench/_node_echo.mjs PORT
// --udp (dgram: each message sent back to its sender); prints "listening on 127.0.0.1:PORT"
// (or the path), stops on SIGTERM/SIGINT.
import dgram from "node:dgram";
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    tls: { type: "boolean" },
    cert: { type: "string" },
    key: { type: "string" },
    unix: { type: "string" },
    udp: { type: "boolean" },
  },
});

// Over UDP: each datagram goes back to its sender.
function serveDatagrams() {
  const socket = dgram.createSocket("udp4");
  socket.on("message", (msg, rinfo) => {
    socket.send(msg, rinfo.port, rinfo.address);
  });
  // One peer's ICMP unreachable stops nothing.
  socket.on("error", () => {});
  socket.bind(Number(positionals[0] ?? 0), "127.0.0.1", () => {
    console.log(`listening on 127.0.0.1:${socket.address().port}`);
  });
  for (const signal of ["SIGTERM", "SIGINT"]) {
    process.on(signal, () => process.exit(0));
  }
}

function echo(socket) {
  if (values.unix === undefined) socket.setNoDelay(true);
  // A reset peer (or a failed handshake) ends only its own connection.
  socket.on("error", () => socket.destroy());
  socket.pipe(socket);
}

function serveStream() {
  const server = values.tls
    ? tls.createServer({
      cert: fs.readFileSync(values.cert),
      key: fs.readFileSync(values.key),
    }, echo)
    : net.createServer(echo);
  // A client that fails its handshake is its own loss, not the server's.
  server.on("tlsClientError", () => {});
  server.maxConnections = 100000;
  const ready = () => {
    const addr = server.address();
    console.log(
      `listening on ${
        typeof addr === "string" ? addr : `127.0.0.1:${addr.port}`
      }`,
    );
  };
  if (values.unix !== undefined) {
    fs.rmSync(values.unix, { force: true }); // a stale file from a killed run
    server.listen(values.unix, ready);
  } else {
    server.listen(Number(positionals[0] ?? 0), "127.0.0.1", ready);
  }
  for (const signal of ["SIGTERM", "SIGINT"]) {
    process.on(signal, () => {
      if (values.unix !== undefined) fs.rmSync(values.unix, { force: true });
      process.exit(0);
    });
  }
}

if (values.udp) serveDatagrams();
else serveStream();
