#!/usr/bin/env -S deno run --allow-net
/**
 * A fault-injecting TCP/TLS/Unix proxy after Shopify's toxiproxy: it listens
 * on an endpoint of the network layer, relays each connection to an upstream
 * endpoint, and runs each direction's bytes through that direction's chain
 * of toxics (tools/_toxics.ts: `latency`, `bandwidth`, `slow_close`,
 * `timeout`, `reset_peer`, `slicer`, `limit_data`, `hang`), which may be
 * added and removed on live connections.
 *
 * The relay is a read/write loop per direction with one buffer each
 * ({@linkcode PROXY_BUFFER_SIZE}), so a side that does not read stops the
 * proxy reading the other (`_proxy_relay.ts`). This file is the entry
 * point: `main` runs what `_proxy_cli.ts` parses; {@linkcode serveProxy}
 * is `_proxy_server.ts`, its counters `_proxy_stats.ts`.
 *
 * @module
 */

import {
  CliError,
  describeError,
  parseCommandLine,
  parseInteger,
  parseSeconds,
  runMain,
  shutdownSignal,
  UsageError,
} from "../_cli.ts";
import { formatAddr, formatEndpoint, printListening } from "../_net.ts";
import { parseServerEndpoint } from "../_net_options.ts";
import { type ProxyApi, serveProxyApi } from "./_proxy_api.ts";
import { parseToxic } from "./_toxics.ts";
import { PROXY_BUFFER_SIZE } from "./_proxy_relay.ts";
import {
  type ProxyOptions,
  type ProxyServer,
  type ProxyUpstream,
  serveProxy,
} from "./_proxy_server.ts";
import {
  formatProxyStats,
  type ProxyStats,
  type ToxicStats,
} from "./_proxy_stats.ts";
import { COMMAND, parseApiAddress, parseUpstream } from "./_proxy_cli.ts";

export type { ToxicSpec, ToxicStream } from "./_toxics.ts";
export { formatProxyStats, PROXY_BUFFER_SIZE, serveProxy };
export type {
  ProxyOptions,
  ProxyServer,
  ProxyStats,
  ProxyUpstream,
  ToxicStats,
};

/**
 * The command line: `deno run --allow-net tools/proxy.ts --upstream
 * HOST:PORT [options]`. Returns the exit code.
 */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  const values = parsed.values;
  const toxics = ((values.toxic ?? []) as string[]).map((text) => {
    try {
      return parseToxic(text);
    } catch (error) {
      throw new UsageError(
        `Cannot parse --toxic "${text}": ${(error as Error).message}`,
      );
    }
  });
  const connectTimeout = parseSeconds(
    values["connect-timeout"],
    "--connect-timeout",
  );
  const seed = values.seed === undefined
    ? undefined
    : parseInteger(values.seed, "--seed", 0, 2 ** 32 - 1);
  const apiAt = values.api === undefined
    ? undefined
    : parseApiAddress(values.api as string);
  const endpoint = await parseServerEndpoint(values);
  const upstream = apiAt !== undefined && values.upstream === undefined &&
      values["upstream-unix"] === undefined
    ? undefined
    : await parseUpstream(values);
  const running: { proxy?: ProxyServer; api?: ProxyApi } = {};
  const apiStats = () => {
    for (const name of running.api?.names() ?? []) {
      const stats = running.api!.proxy(name)?.stats();
      if (stats) console.log(`${name}: ${formatProxyStats(stats)}`);
    }
  };
  using shutdown = shutdownSignal({
    onForce() {
      if (running.proxy) console.log(formatProxyStats(running.proxy.stats()));
      apiStats();
    },
  });
  if (apiAt !== undefined) {
    const api = running.api = await serveProxyApi({
      ...apiAt,
      signal: shutdown.signal,
    }).catch((error) => {
      throw new CliError(
        `Cannot serve the API on ${values.api}: ${describeError(error)}`,
      );
    });
    if (upstream === undefined) printListening(api.addr);
    console.error(`toxiproxy API on http://${formatAddr(api.addr)}`);
    if (!/^(127\.|::1$|localhost$)/.test(apiAt.hostname)) {
      console.error(
        `warning: the API is on ${apiAt.hostname}, not loopback: anyone who reaches it can make this host open connections`,
      );
    }
  }
  if (upstream === undefined) {
    await new Promise((resolve) =>
      shutdown.signal.addEventListener("abort", resolve, { once: true })
    );
    apiStats();
    await running.api!.close();
    return 0;
  }
  const proxy = running.proxy = await serveProxy({
    ...endpoint,
    upstream: upstream.transport === "unix" ? { unix: upstream.path } : {
      hostname: upstream.hostname,
      port: upstream.port,
      ...(upstream.transport === "tls" ? { tls: upstream.tls } : {}),
    },
    connectTimeout,
    toxics,
    ...(seed === undefined ? {} : { seed }),
    signal: shutdown.signal,
  });
  printListening(proxy.addr);
  console.error(`relaying to ${formatEndpoint(upstream)}`);
  console.log(formatProxyStats(await proxy.finished));
  apiStats();
  await running.api?.close();
  return 0;
}

if (import.meta.main) runMain(main);
