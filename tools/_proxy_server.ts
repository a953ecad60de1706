/**
 * A proxy as a running thing: {@linkcode serveProxy} listens, accepts
 * (through the shared acceptor and access lists), hands each connection to
 * the relay (`_proxy_relay.ts`), and keeps the proxy's toxics, which its
 * handle adds, removes and changes on live connections, and its counters
 * (`_proxy_stats.ts`). Private to `tools/proxy.ts`, which re-exports it.
 *
 * @module
 */

import { Acceptor } from "../_accept.ts";
import { type Addr, listen, type TlsClientOptions } from "../_net.ts";
import {
  accessControl,
  connectEndpoint,
  listenEndpoint,
  type ServerEndpointOptions,
} from "../_net_options.ts";
import {
  type Chain,
  resolveToxic,
  seededRandom,
  type ToxicSpec,
} from "./_toxics.ts";
import {
  copyProxyStats,
  newProxyStats,
  type ProxyStats,
  toxicStats,
} from "./_proxy_stats.ts";
import { relay, type RelayContext } from "./_proxy_relay.ts";
import { StatsWatch } from "../_watch.ts";

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
   * Resolves with the counters once `test` holds for them: checked now and
   * at every change worth waiting for (a connection accepted or ended, a
   * toxic's bytes counted), so a test waits for "no connection open" or
   * "500 bytes into the hang toxic" without polling. Rejects with
   * `signal`'s reason when it aborts, and if the proxy stops first.
   */
  until(
    test: (stats: ProxyStats) => boolean,
    signal?: AbortSignal,
  ): Promise<ProxyStats>;
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
  const stats = newProxyStats();
  const tally = (toxic: Required<ToxicSpec>) => toxicStats(stats, toxic);
  for (const toxic of toxics) tally(toxic);
  const watch = new StatsWatch(snapshot);
  const cuts = new Set<() => void>();
  const chains = new Set<Chain>();
  const applyToxics = (chain: Chain) => {
    for (const name of chain.update(toxics)) stats.toxics[name]!.applied++;
  };
  const relays = new Set<Promise<void>>();
  let nextId = 1;
  const context: RelayContext = {
    upstream,
    connectTimeout,
    stop: stopping.signal,
    stats,
    log,
    tally,
    counted: () => watch.changed(),
    applyToxics,
    chains,
    cuts,
    random: rootRandom,
  };

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
      watch.changed();
      const running = relay(context, conn, nextId++).finally(() => {
        stats.active--;
        relays.delete(running);
        watch.changed();
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
    watch.stop();
    return snapshot();
  })();
  const onAbort = () => stopping.abort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) stopping.abort();
  finished.finally(() => options.signal?.removeEventListener("abort", onAbort));

  function snapshot(): ProxyStats {
    return copyProxyStats(stats);
  }

  return {
    addr,
    stats: snapshot,
    finished,
    until: (test, signal) => watch.until(test, signal),
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
