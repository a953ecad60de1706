/**
 * The main job (`deno task demo`): the notes' Test Server on an ephemeral
 * port, the Test Client against it, both sides' transcripts as they happen,
 * in the clear and over TLS (the test CA of tests/fixtures/tls); then each
 * echo server under a short load that checks every byte, and the proxy
 * adding latency between the load and an echo server.
 *
 * Requires `--allow-net=127.0.0.1 --allow-read=tests/fixtures/tls`.
 *
 * @module
 */

import { type CommandSpec, parseCommandLine, runMain } from "./_cli.ts";
import { formatAddr, type TlsServerOptions } from "./_net.ts";
import { runTestClient } from "./clients/client.ts";
import { type EchoServer, formatStats } from "./servers/_echo.ts";
import { serveCompletionEcho } from "./servers/completion_echo.ts";
import { serveSelectEcho } from "./servers/select_echo.ts";
import { serveSequential } from "./servers/sequential.ts";
import { formatUdpStats, serveUdpEcho } from "./servers/udp_echo.ts";
import { formatProxyStats, serveProxy } from "./tools/proxy.ts";
import {
  formatReport,
  formatUdpReport,
  runLoad,
  runUdpLoad,
} from "./tools/load.ts";

/** Prints `text` under a heading. */
function section(title: string): void {
  console.log(`\n== ${title} ==`);
}

/** The throwaway certificates of the tests: never protect anything with them. */
const FIXTURES = new URL("./tests/fixtures/tls/", import.meta.url);

/**
 * The notes' conversation: Test Server and Test Client. With `tls`, over
 * TLS: the server presents `tls.server`'s certificate and key, and the
 * client trusts the CA in `tls.caCert` (PEM text).
 */
async function conversation(
  tls?: { server: TlsServerOptions; caCert: string },
): Promise<void> {
  section(
    `Test Server and Test Client${tls ? " over TLS" : ""} ` +
      "(servers/sequential.ts, clients/client.ts)",
  );
  await using server = await serveSequential({
    port: 0,
    once: true,
    ...(tls ? { tls: tls.server } : {}),
    log: (line) => console.log(`server | ${line}`),
    warn: (line) => console.log(`server | ${line}`),
  });
  console.log(`server | listening on ${formatAddr(server.addr)}`);
  await runTestClient({
    port: server.addr.port,
    ...(tls ? { tls: { caCerts: [tls.caCert] } } : {}),
    log: (line) => console.log(`client | ${line}`),
  });
  await server.finished;
}

/** The UDP echo server under 1 s of paced datagrams, loss counted. */
async function udpUnderLoad(): Promise<boolean> {
  section(
    "UDP echo server (servers/udp_echo.ts), 10 flows of 1,000 datagrams/s for 1 s",
  );
  const server = await serveUdpEcho({
    port: 0,
    log: (line) => console.log(`server | ${line}`),
  });
  console.log(`server | listening on ${formatAddr(server.addr)}`);
  let ok = false;
  try {
    const report = await runUdpLoad({
      port: server.addr.port,
      flows: 10,
      rate: 1_000,
      duration: 1_000,
    });
    for (const line of formatUdpReport(report).split("\n")) {
      console.log(`load   | ${line}`);
    }
    ok = report.ok;
  } finally {
    console.log(`server | ${formatUdpStats(await server.close())}`);
  }
  return ok;
}

/** One echo server under a short pingpong load, then its final stats. */
async function underLoad(title: string, server: EchoServer): Promise<boolean> {
  section(title);
  console.log(`server | listening on ${formatAddr(server.addr)}`);
  let ok = false;
  try {
    const report = await runLoad({
      port: server.addr.port,
      connections: 50,
      size: 64,
      duration: 1_000,
    });
    for (const line of formatReport(report).split("\n")) {
      console.log(`load   | ${line}`);
    }
    ok = report.ok;
    // The load has closed its connections; let the server see every close
    // before it stops, so that it has nothing left to drain.
    await server.until((stats) => stats.active === 0, AbortSignal.timeout(2000))
      .catch(() => {});
  } finally {
    console.log(`server | ${formatStats(await server.close())}`);
  }
  return ok;
}

/**
 * The fault-injecting proxy between the load generator and the select echo
 * server, adding 20 ms to every reply: the load report's round trips show
 * it.
 */
async function throughProxy(): Promise<boolean> {
  section(
    "Proxy (tools/proxy.ts) with a latency toxic of 20 ms in front of the select() echo server, 10 connections for 1 s",
  );
  await using echo = await serveSelectEcho({ port: 0, log: () => {} });
  await using proxy = await serveProxy({
    port: 0,
    upstream: { hostname: "127.0.0.1", port: echo.addr.port },
    toxics: [{ type: "latency", attributes: { latency: 20 } }],
    log: (line) => console.log(`proxy  | ${line}`),
  });
  console.log(
    `proxy  | listening on ${formatAddr(proxy.addr)}, relaying to ` +
      `${formatAddr(echo.addr)} through latency_downstream (20 ms)`,
  );
  const report = await runLoad({
    port: (proxy.addr as Deno.NetAddr).port,
    connections: 10,
    size: 64,
    duration: 1_000,
  });
  for (const line of formatReport(report).split("\n")) {
    console.log(`load   | ${line}`);
  }
  console.log(`proxy  | ${formatProxyStats(await proxy.close())}`);
  return report.ok;
}

const COMMAND: CommandSpec = {
  name: "demo.ts",
  summary: "The main job: the notes' Test Server and Test Client talk on an " +
    "ephemeral port of 127.0.0.1, in the clear and over TLS (the tests' " +
    "throwaway CA), then each echo server (TCP, then UDP) runs 1 s under a " +
    "load that checks every byte, and the proxy adds 20 ms of latency " +
    "between the load and an echo server.",
  options: {},
  epilog: "Exit status: 0 when every byte came back, 1 otherwise, 2 on a " +
    "usage mistake.\nRun it as `deno task demo`.",
};

/** Runs every part of the demo in turn. */
async function main(args: string[]): Promise<number> {
  if (!parseCommandLine(args, COMMAND)) return 0;
  console.log("socket-notes demo: the notes' programs, run on 127.0.0.1");
  await conversation();
  const read = (name: string) => Deno.readTextFile(new URL(name, FIXTURES));
  await conversation({
    server: { cert: await read("server.pem"), key: await read("server.key") },
    caCert: await read("ca.pem"),
  });
  console.log(
    "\nThe echo servers below run in this process, beside the load generator," +
      "\nso the figures are a demonstration; `deno task bench` measures them apart.",
  );
  const log = (line: string) => console.log(`server | ${line}`);
  const results = [
    await underLoad(
      "select() echo server (servers/select_echo.ts), 50 connections for 1 s",
      await serveSelectEcho({ port: 0, log }),
    ),
    await underLoad(
      "I/O completion port echo server (servers/completion_echo.ts), 50 connections for 1 s",
      await serveCompletionEcho({ port: 0, log }),
    ),
    await udpUnderLoad(),
    await throughProxy(),
  ];
  return results.every(Boolean) ? 0 : 1;
}

if (import.meta.main) runMain(main);
