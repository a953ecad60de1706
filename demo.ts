/**
 * The main job (`deno task demo`): the notes' Test Server on an ephemeral
 * port, the Test Client against it, both sides' transcripts as they happen.
 *
 * Requires `--allow-net=127.0.0.1`.
 *
 * @module
 */

import { formatAddress, runMain } from "./_cli.ts";
import { runTestClient } from "./clients/client.ts";
import { serveSequential } from "./servers/sequential.ts";

/** Prints `text` under a heading. */
function section(title: string): void {
  console.log(`\n== ${title} ==`);
}

/** The notes' conversation: Test Server and Test Client. */
async function conversation(): Promise<void> {
  section(
    "Test Server and Test Client (servers/sequential.ts, clients/client.ts)",
  );
  await using server = serveSequential({
    port: 0,
    once: true,
    log: (line) => console.log(`server | ${line}`),
    warn: (line) => console.log(`server | ${line}`),
  });
  console.log(`server | listening on ${formatAddress(server.addr)}`);
  await runTestClient({
    port: server.addr.port,
    log: (line) => console.log(`client | ${line}`),
  });
  await server.finished;
}

/** Runs every part of the demo in turn. */
async function main(): Promise<number> {
  console.log("socket-notes demo: the notes' programs, run on 127.0.0.1");
  await conversation();
  return 0;
}

if (import.meta.main) runMain(main);
