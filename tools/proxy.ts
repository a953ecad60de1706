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
 * ({@linkcode PROXY_BUFFER_SIZE}): a chunk is written (through the toxics)
 * before the next read, so a side that does not read stops the proxy
 * reading the other, and a connection holds at most two buffers, 32 KiB, in
 * the proxy (the kernel's socket buffers hold more). `conn.readable` is not
 * used: it closes the whole connection at EOF (denoland/deno#22258), and a
 * half-close must pass on with the other direction still flowing.
 *
 * @module
 */

import {
  CliError,
  describeError,
  NOTES_PORT,
  type OptionSpec,
  parseCommandLine,
  parseHost,
  parseInteger,
  parseSeconds,
  runMain,
  shutdownSignal,
  SIGNALS_HELP,
  UsageError,
} from "../_cli.ts";
import { Acceptor } from "../_accept.ts";
import {
  accessControl,
  type Addr,
  connect,
  type ConnectEndpoint,
  connectEndpoint,
  formatAddr,
  formatEndpoint,
  listen,
  listenEndpoint,
  parseClientEndpoint,
  parseServerEndpoint,
  printListening,
  SERVER_ENDPOINT_OPTIONS,
  type ServerEndpointOptions,
  TLS_LIMITS_HELP,
  type TlsClientOptions,
  writeAll,
} from "../_net.ts";
import { parseTarget } from "./netstat.ts";
import { type ProxyApi, serveProxyApi } from "./_proxy_api.ts";
import {
  Chain,
  parseToxic,
  resolveToxic,
  seededRandom,
  type Stage,
  type ToxicSpec,
  type ToxicStream,
} from "./_toxics.ts";

export type { ToxicSpec, ToxicStream } from "./_toxics.ts";

/**
 * The buffer of each direction of each connection, in bytes: the proxy
 * holds at most twice this per connection.
 */
export const PROXY_BUFFER_SIZE = 16 * 1024;

/** Where the proxy connects: TCP, TLS or a Unix socket. */
export interface ProxyUpstream {
  /** Host to connect to (with `port`). */
  hostname?: string;
  /** Port to connect to. */
  port?: number;
  /** The Unix socket to connect to instead. */
  unix?: string;
  /** Speak TLS to the upstream, verified as these options say. */
  tls?: TlsClientOptions;
}

/** Options of {@linkcode serveProxy}. */
export interface ProxyOptions extends ServerEndpointOptions {
  /** Where each connection is relayed to. */
  upstream: ProxyUpstream;
  /** Give up a connect to the upstream after this many ms. Default 10000. */
  connectTimeout?: number;
  /** Toxics, in chain order per direction. Default none. */
  toxics?: ToxicSpec[];
  /** Seed of the random draws (jitter, toxicity), so a run repeats. */
  seed?: number;
  /** Where log lines go. Default `console.error`. */
  log?: (line: string) => void;
  /** Aborting it stops the proxy as `close()` does. */
  signal?: AbortSignal;
}

/** Counters of one toxic, over every connection. */
export interface ToxicStats {
  /** The toxic's type, as `latency`. */
  type: string;
  /** The direction it acts on. */
  stream: ToxicStream;
  /** Connections it was applied to (by its toxicity). */
  applied: number;
  /** Bytes given to it. */
  bytesIn: number;
  /** Bytes it passed on (fewer when it drops: hang, timeout, limit_data). */
  bytesOut: number;
}

/** Counters of a proxy, live. */
export interface ProxyStats {
  /** Connections accepted. */
  connections: number;
  /** Connections open now (relaying or connecting). */
  active: number;
  /** Bytes read from clients (client to server, before the toxics). */
  bytesReceivedUpstream: number;
  /** Bytes read from the upstream (server to client, before the toxics). */
  bytesReceivedDownstream: number;
  /** Bytes written to the upstream (client to server). */
  bytesUpstream: number;
  /** Bytes written to clients (server to client). */
  bytesDownstream: number;
  /** Bytes read and not yet written, now, over all connections. */
  bytesHeld: number;
  /** The most bytes one direction of one connection has held at once. */
  peakHeld: number;
  /** Connects to the upstream that failed (refused, timed out, TLS). */
  upstreamFailures: number;
  /** Connections that ended in an error (a reset, a broken pipe). */
  errors: number;
  /** Connections refused by `allow`/`deny`. */
  denied: number;
  /** Failed `accept()` calls that backed off. */
  acceptErrors: number;
  /** Connections gone before they were accepted. */
  acceptAborted: number;
  /**
   * Each toxic's counters by its name, kept after it is removed (a toxic
   * added again under the name counts on).
   */
  toxics: Record<string, ToxicStats>;
}

/** A running proxy, as {@linkcode serveProxy} returns it. */
export interface ProxyServer extends AsyncDisposable {
  /** The bound address (the real port when 0 was asked). */
  readonly addr: Addr;
  /** A snapshot of the counters. */
  stats(): ProxyStats;
  /**
   * Stops accepting, closes every open connection (both sides) and resolves
   * with the final counters. Safe to call more than once.
   */
  close(): Promise<ProxyStats>;
  /** Resolves with the final counters once the proxy has stopped. */
  readonly finished: Promise<ProxyStats>;
  /**
   * Adds a toxic (at the end of its stream's chain), on the connections
   * already open too; returns it with every field filled in.
   *
   * @throws {RangeError} On a bad toxic or a name already in use.
   */
  addToxic(spec: ToxicSpec): Required<ToxicSpec>;
  /**
   * Removes a toxic by name, on open connections too: what it holds is
   * passed on at once. Returns false when there is no such toxic.
   */
  removeToxic(name: string): boolean;
  /** The toxics now, in chain order. */
  toxics(): Required<ToxicSpec>[];
  /**
   * Changes a toxic's attributes (merged) or toxicity, live on open
   * connections for the attributes, for new ones for the toxicity. Returns
   * the toxic, or undefined when there is no such name.
   *
   * @throws {RangeError} On a bad attribute or toxicity.
   */
  updateToxic(
    name: string,
    change: Pick<ToxicSpec, "attributes" | "toxicity">,
  ): Required<ToxicSpec> | undefined;
  /** Whether it is listening (toxiproxy's `enabled`). */
  readonly enabled: boolean;
  /**
   * `false` stops listening (new connections are refused) and cuts every
   * open connection; `true` listens again on the same address.
   */
  setEnabled(on: boolean): Promise<void>;
}

/**
 * Starts a proxy: listens where `options` say (TCP on 127.0.0.1 and a free
 * port by default; TLS, a Unix socket, access lists as the echo servers)
 * and relays each connection to `options.upstream`, through the toxics of
 * each direction.
 *
 * Every byte arrives in order both ways; a half-close (EOF) on one side is
 * passed on with `closeWrite` while the other direction flows on; a reset
 * or error on either side closes both at once (Deno cannot set SO_LINGER 0:
 * the other side gets a FIN, or a RST if the proxy left unread bytes in
 * its socket); an upstream that refuses or times out closes the client and
 * logs a line.
 *
 * Requires `--allow-net` (and read/write of a Unix socket's path).
 *
 * @param options Where to listen, where to connect, the toxics.
 * @returns The running proxy; `close()` stops it and gives the stats.
 * @throws {RangeError} On a bad toxic or an upstream without an address.
 * @throws {CliError} If the address cannot be bound.
 *
 * @example
 * ```ts
 * import { serveProxy, serveSelectEcho } from "./mod.ts";
 *
 * await using echo = await serveSelectEcho({ port: 0, log: () => {} });
 * await using proxy = await serveProxy({
 *   port: 0,
 *   upstream: { hostname: "127.0.0.1", port: echo.addr.port },
 *   toxics: [{ type: "latency", attributes: { latency: 50 } }],
 * });
 * console.log(proxy.stats().connections); // 0
 * ```
 */
export async function serveProxy(options: ProxyOptions): Promise<ProxyServer> {
  const upstream = connectEndpoint(options.upstream);
  let toxics: Required<ToxicSpec>[] = [];
  for (const spec of options.toxics ?? []) toxics = withToxic(toxics, spec);
  const connectTimeout = options.connectTimeout ?? 10_000;
  const log = options.log ?? ((line) => console.error(line));
  const access = accessControl(options);
  const rootRandom = options.seed === undefined
    ? undefined
    : seededRandom(options.seed);
  let listener: Deno.Listener = await listen(listenEndpoint(options, 0));
  const addr = listener.addr as Addr;
  let enabled = true;
  let acceptStop = new AbortController();
  const stopping = new AbortController();
  const stats: ProxyStats = {
    connections: 0,
    active: 0,
    bytesReceivedUpstream: 0,
    bytesReceivedDownstream: 0,
    bytesUpstream: 0,
    bytesDownstream: 0,
    bytesHeld: 0,
    peakHeld: 0,
    upstreamFailures: 0,
    errors: 0,
    denied: 0,
    acceptErrors: 0,
    acceptAborted: 0,
    toxics: {},
  };
  /** The counters of `toxic`, made when first needed. */
  const tally = (toxic: Required<ToxicSpec>): ToxicStats => {
    const known = stats.toxics[toxic.name];
    if (known !== undefined) {
      known.type = toxic.type;
      known.stream = toxic.stream;
      return known;
    }
    return stats.toxics[toxic.name] = {
      type: toxic.type,
      stream: toxic.stream,
      applied: 0,
      bytesIn: 0,
      bytesOut: 0,
    };
  };
  for (const toxic of toxics) tally(toxic);
  const cuts = new Set<() => void>();
  const chains = new Set<Chain>();
  const applyToxics = (chain: Chain) => {
    for (const name of chain.update(toxics)) stats.toxics[name]!.applied++;
  };
  const relays = new Set<Promise<void>>();
  let nextId = 1;

  async function relay(client: Deno.Conn, id: number): Promise<void> {
    const remote = formatAddr(client.remoteAddr as Addr);
    let server: Deno.Conn;
    try {
      server = await connect(upstream, {
        timeout: connectTimeout,
        signal: stopping.signal,
      });
    } catch (error) {
      client.close();
      if (stopping.signal.aborted) return;
      stats.upstreamFailures++;
      log(
        `connection ${id} from ${remote}: ${
          error instanceof Error ? error.message : String(error)
        }; closed the client`,
      );
      return;
    }
    for (const conn of [client, server]) {
      // As Go does for toxiproxy: a slicer's slices go out one by one.
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    }
    const closed = new AbortController();
    const cut = () => {
      if (closed.signal.aborted) return;
      closed.abort();
      for (const conn of [client, server]) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
    };
    cuts.add(cut);
    const random = rootRandom === undefined
      ? Math.random
      : seededRandom(Math.floor(rootRandom() * 2 ** 32));

    async function pump(
      src: Deno.Conn,
      dst: Deno.Conn,
      stream: ToxicStream,
    ): Promise<void> {
      const buffer = new Uint8Array(PROXY_BUFFER_SIZE);
      const [received, counter] = stream === "upstream"
        ? ["bytesReceivedUpstream", "bytesUpstream"] as const
        : ["bytesReceivedDownstream", "bytesDownstream"] as const;
      let held = 0;
      const sink: Stage = {
        async write(chunk) {
          await writeAll(dst, chunk);
          stats[counter] += chunk.length;
        },
        end: () => dst.closeWrite(),
      };
      const chain = new Chain(stream, sink, {
        random,
        cut,
        signal: closed.signal,
        fail,
        tally,
      });
      applyToxics(chain);
      chains.add(chain); // till the connection ends: an end held may go on
      mine.push(chain);
      try {
        for (;;) {
          const n = await src.read(buffer);
          if (n === null) {
            await chain.head.end();
            return;
          }
          held = n;
          stats[received] += n;
          stats.bytesHeld += n;
          if (n > stats.peakHeld) stats.peakHeld = n;
          const chunk = n === buffer.length ? buffer : buffer.subarray(0, n);
          if (chain.head === sink) {
            // No toxics (the hot path): writeAll's loop inline, without the
            // sink's and writeAll's async frames (3% of the CPU a message).
            let done = await dst.write(chunk);
            while (done < n) done += await dst.write(chunk.subarray(done));
            stats[counter] += n;
          } else await chain.head.write(chunk);
          stats.bytesHeld -= n;
          held = 0;
        }
      } catch (error) {
        stats.bytesHeld -= held;
        fail(error);
      }

      /** An error of this direction: counted, logged, both sides closed. */
      function fail(error: unknown): void {
        if (closed.signal.aborted) return; // cut: by the other side or a toxic
        stats.errors++;
        log(
          `connection ${id} from ${remote} (${stream}): ${
            describeError(error)
          }; closed both sides`,
        );
        cut();
      }
    }

    const mine: Chain[] = [];
    await Promise.all([
      pump(client, server, "upstream"),
      pump(server, client, "downstream"),
    ]);
    for (const chain of mine) chains.delete(chain);
    cut();
    cuts.delete(cut);
  }

  async function acceptLoop(signal: AbortSignal): Promise<void> {
    const acceptor = new Acceptor(listener, {
      signal,
      log,
      counters: stats,
      access,
    });
    for (;;) {
      const conn = await acceptor.accept();
      if (conn === undefined) return;
      stats.connections++;
      stats.active++;
      const running = relay(conn, nextId++).finally(() => {
        stats.active--;
        relays.delete(running);
      });
      relays.add(running);
    }
  }

  /** Stops listening and cuts every open connection (enabled: false). */
  async function stopListening(): Promise<void> {
    acceptStop.abort();
    try {
      listener.close();
    } catch {
      // Closed already.
    }
    await accepting;
    for (const cut of cuts) cut();
    await Promise.all(relays);
  }

  let accepting = acceptLoop(AbortSignal.any([
    stopping.signal,
    acceptStop.signal,
  ]));
  let switching = Promise.resolve();
  const finished = (async () => {
    await new Promise((resolve) =>
      stopping.signal.addEventListener("abort", resolve, { once: true })
    );
    await switching.catch(() => {});
    await stopListening();
    return snapshot();
  })();
  const onAbort = () => stopping.abort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) stopping.abort();
  finished.finally(() => options.signal?.removeEventListener("abort", onAbort));

  function snapshot(): ProxyStats {
    return { ...stats, toxics: structuredClone(stats.toxics) };
  }

  return {
    addr,
    stats: snapshot,
    finished,
    close() {
      stopping.abort();
      return finished;
    },
    addToxic(spec) {
      toxics = withToxic(toxics, spec);
      const added = toxics.at(-1)!;
      tally(added);
      for (const chain of chains) applyToxics(chain);
      return structuredClone(added);
    },
    removeToxic(name) {
      const left = toxics.filter((t) => t.name !== name);
      if (left.length === toxics.length) return false;
      toxics = left;
      for (const chain of chains) applyToxics(chain);
      return true;
    },
    toxics: () => structuredClone(toxics),
    updateToxic(name, change) {
      const toxic = toxics.find((t) => t.name === name);
      if (toxic === undefined) return undefined;
      const checked = resolveToxic({
        ...toxic,
        toxicity: change.toxicity ?? toxic.toxicity,
        stream: toxic.stream,
        attributes: { ...toxic.attributes, ...change.attributes },
      });
      Object.assign(toxic.attributes, checked.attributes); // live settings
      toxic.toxicity = checked.toxicity;
      return structuredClone(toxic);
    },
    get enabled() {
      return enabled;
    },
    setEnabled(on) {
      switching = switching.then(async () => {
        if (on === enabled || stopping.signal.aborted) return;
        if (!on) {
          enabled = false;
          await stopListening();
          return;
        }
        listener = await listen(listenEndpoint(
          "port" in addr ? { ...options, port: addr.port } : options,
          0,
        ));
        acceptStop = new AbortController();
        accepting = acceptLoop(AbortSignal.any([
          stopping.signal,
          acceptStop.signal,
        ]));
        enabled = true;
      });
      return switching;
    },
    [Symbol.asyncDispose]() {
      stopping.abort();
      return finished.then(() => {});
    },
  };
}

/** `toxics` and one more, checked: its name must be new. */
function withToxic(
  toxics: Required<ToxicSpec>[],
  spec: ToxicSpec,
): Required<ToxicSpec>[] {
  const toxic = resolveToxic(spec);
  if (toxics.some((t) => t.name === toxic.name)) {
    throw new RangeError(`Toxic "${toxic.name}" already exists`);
  }
  return [...toxics, toxic];
}

/**
 * Formats counters as the one line the proxy prints when it stops: the
 * bytes written each way (after the toxics), the failures, the bytes read
 * each way (before them), then each toxic's connections and bytes in and
 * out.
 */
export function formatProxyStats(stats: ProxyStats): string {
  const toxics = Object.entries(stats.toxics)
    .map(([name, t]) =>
      `${name} (${t.type} ${t.stream}) on ${t.applied} connections, ` +
      `${t.bytesIn} bytes in, ${t.bytesOut} out`
    ).join("; ");
  return `stats: ${stats.connections} connections, ${stats.bytesUpstream} ` +
    `bytes upstream, ${stats.bytesDownstream} bytes downstream, ` +
    `${stats.upstreamFailures} upstream failures, ${stats.errors} errors, ` +
    `${stats.denied} denied, ${stats.acceptErrors} accept errors, ` +
    `${stats.acceptAborted} gone before accept, peak held ` +
    `${stats.peakHeld} bytes, read ${stats.bytesReceivedUpstream} ` +
    `upstream and ${stats.bytesReceivedDownstream} downstream; toxics: ` +
    `${toxics || "none"}`;
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const OPTIONS: Record<string, OptionSpec> = {
  ...SERVER_ENDPOINT_OPTIONS,
  port: {
    ...SERVER_ENDPOINT_OPTIONS.port!,
    default: "0",
    description: "Port to listen on; 0 picks a free one (printed).",
  },
  upstream: {
    type: "string",
    arg: "HOST:PORT",
    description: "Relay to this server (an IPv6 address in brackets).",
  },
  "upstream-unix": {
    type: "string",
    arg: "PATH",
    description: "Relay to the Unix socket at PATH instead.",
  },
  "upstream-tls": {
    type: "boolean",
    description: "Speak TLS to the upstream.",
  },
  "upstream-ca": {
    type: "string",
    arg: "FILE",
    description: "Upstream TLS: trust this CA (PEM) beside Deno's roots.",
  },
  "upstream-server-name": {
    type: "string",
    arg: "NAME",
    description:
      "Upstream TLS: the name verified in its certificate and sent as SNI.",
  },
  "connect-timeout": {
    type: "string",
    default: "10",
    arg: "SECONDS",
    description: "Give up a connect to the upstream after this long.",
  },
  toxic: {
    type: "string",
    multiple: true,
    arg: "SPEC",
    description:
      "Add a toxic, TYPE:KEY=VALUE,... (repeatable; in chain order per stream).",
  },
  api: {
    type: "string",
    arg: "HOST:PORT",
    description:
      "Serve toxiproxy's HTTP API here (as 127.0.0.1:8474); --upstream is then optional.",
  },
  seed: {
    type: "string",
    arg: "N",
    description:
      "Seed the random draws (jitter, toxicity, slicer sizes) so a run repeats.",
  },
};

const COMMAND = {
  name: "tools/proxy.ts",
  summary:
    "A fault-injecting proxy after toxiproxy: relays each connection to an upstream, through toxics per direction (latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, hang), over TCP, TLS or Unix sockets on either side.",
  options: OPTIONS,
  epilog: `Toxics (toxiproxy's names and attributes; each also takes
stream=upstream|downstream (client to server, server to client; default
downstream), toxicity=0..1 (probability a connection gets it; default 1) and
name=NAME):
  latency:latency=MS,jitter=MS   delay every chunk by latency +- jitter ms
  bandwidth:rate=KB_S            at most rate KB/s (1 KB = 1000 bytes)
  slow_close:delay=MS            the end (FIN) waits delay ms
  timeout:timeout=MS             pass no data; close after MS (0: never)
  reset_peer:timeout=MS          at the first data, wait MS, close abruptly
  slicer:average_size=N,size_variation=N,delay=US
                                 cut chunks in slices of N +- N bytes,
                                 delay us between them
  limit_data:bytes=N             close the connection after N bytes
  hang                           drop all data and the end; stay open

Examples:
  deno run --allow-net=127.0.0.1 tools/proxy.ts --upstream 127.0.0.1:${NOTES_PORT} \\
    --toxic latency:latency=100,jitter=10
  deno run --allow-net=127.0.0.1 --allow-read=tests/fixtures/tls tools/proxy.ts \\
    --tls --cert tests/fixtures/tls/server.pem --key tests/fixtures/tls/server.key \\
    --upstream 127.0.0.1:${NOTES_PORT}

With --api, toxiproxy's clients create and drive proxies over HTTP
(GET /version, GET/POST /proxies, POST /populate, GET/POST/DELETE
/proxies/NAME, GET/POST /proxies/NAME/toxics, GET/POST/DELETE
/proxies/NAME/toxics/TOXIC, POST /reset); without --upstream it prints the
API's "listening on" line. Keep it on loopback: anyone who reaches it can
open connections from this host.

Each direction holds at most ${PROXY_BUFFER_SIZE} bytes of a connection.
Prints "listening on HOST:PORT"; on SIGINT/SIGTERM closes every connection
and prints the stats. ${SIGNALS_HELP}
${TLS_LIMITS_HELP}`,
};

/** Reads the upstream options into an endpoint, naming the option at fault. */
async function parseUpstream(
  values: Record<string, unknown>,
): Promise<ConnectEndpoint> {
  const given = values.upstream as string | undefined;
  const unix = values["upstream-unix"] as string | undefined;
  const tls = values["upstream-tls"] === true;
  if (unix === "") {
    throw new UsageError(
      `Cannot parse --upstream-unix "": expected a socket path`,
    );
  }
  if (tls && unix !== undefined) {
    throw new UsageError(
      "--upstream-tls and --upstream-unix do not combine: Deno's TLS runs over TCP only",
    );
  }
  if (given !== undefined && unix !== undefined) {
    throw new UsageError("--upstream and --upstream-unix do not combine");
  }
  if (given === undefined && unix === undefined) {
    throw new UsageError(
      "Give --upstream HOST:PORT or --upstream-unix PATH (see --help)",
    );
  }
  if (!tls) {
    for (const name of ["upstream-ca", "upstream-server-name"]) {
      if (values[name] !== undefined) {
        throw new UsageError(`--${name} needs --upstream-tls`);
      }
    }
  }
  let target: { hostname: string; port: number } | undefined;
  if (given !== undefined) {
    try {
      target = parseTarget(given, "--upstream");
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  if (values["upstream-server-name"] !== undefined) {
    parseHost(values["upstream-server-name"], "--upstream-server-name");
  }
  try {
    return await parseClientEndpoint({
      host: target?.hostname,
      port: target?.port,
      unix,
      tls,
      ca: values["upstream-ca"],
      "server-name": values["upstream-server-name"],
    });
  } catch (error) {
    if (error instanceof CliError) {
      throw new CliError(error.message.replace("--ca ", "--upstream-ca "));
    }
    throw error;
  }
}

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

/** `--api HOST:PORT`, port 0 allowed (a free one, printed). */
function parseApiAddress(text: string): { hostname: string; port: number } {
  const zero = /:0$/.test(text);
  try {
    const target = parseTarget(
      zero ? text.replace(/:0$/, ":1") : text,
      "--api",
    );
    return { hostname: target.hostname, port: zero ? 0 : target.port };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

if (import.meta.main) runMain(main);
