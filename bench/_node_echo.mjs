// Baseline for `deno task bench`: Node's `net` echo, `socket.pipe(socket)`,
// run by `node` (not Deno). Usage: node bench/_node_echo.mjs PORT (0 picks a
// free port); prints "listening on 127.0.0.1:PORT", stops on SIGTERM/SIGINT.
import net from "node:net";

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  // A reset peer ends only its own connection.
  socket.on("error", () => socket.destroy());
  socket.pipe(socket);
});
server.maxConnections = 100000;
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
