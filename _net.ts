/**
 * The network layer every script of socket-notes shares, the only place
 * that listens or connects: endpoints for TCP, TLS and Unix sockets,
 * `listen` and `connect`, and the `listening on` line both ways. The
 * endpoint options of the command line are in `_net_options.ts`, the
 * accept loop in `_accept.ts`, the readings of TLS failures in
 * `_tls_errors.ts`.
 *
 * Private to this package: scripts import it, `mod.ts` does not re-export it.
 *
 * @module
 */

import { CliError, describeError } from "./_cli.ts";
import {
  describeTlsConnectFailure,
  describeTlsError,
  isTlsError,
} from "./_tls_errors.ts";

// ---------------------------------------------------------------------------
// Endpoints: where a server listens and a client connects
// ---------------------------------------------------------------------------

/** What a TLS server presents: its certificate chain and key, as PEM text. */
export interface TlsServerOptions {
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM (PKCS#8, RSA or EC). */
  key: string;
  /** ALPN protocols offered, in order of preference. */
  alpn?: string[];
}

/** How a TLS client verifies its server and what it presents. */
export interface TlsClientOptions {
  /** CA certificates (PEM) trusted beside Deno's default roots. */
  caCerts?: string[];
  /**
   * The name verified in the server's certificate and sent as SNI, when it
   * is not the host connected to.
   */
  serverName?: string;
  /** A client certificate chain, PEM (with `key`). */
  cert?: string;
  /** The client certificate's private key, PEM. */
  key?: string;
  /** ALPN protocols offered, in order of preference. */
  alpn?: string[];
}

/** Where a server listens: plain TCP, TLS over TCP, or a Unix socket. */
export type ListenEndpoint =
  | {
    transport: "tcp";
    hostname: string;
    port: number;
    /** Let several listeners share the port (SO_REUSEPORT, Linux). */
    reusePort?: boolean;
  }
  | {
    transport: "tls";
    hostname: string;
    port: number;
    reusePort?: boolean;
    tls: TlsServerOptions;
  }
  | { transport: "unix"; path: string };

/** Where a client connects: plain TCP, TLS over TCP, or a Unix socket. */
export type ConnectEndpoint =
  | { transport: "tcp"; hostname: string; port: number }
  | { transport: "tls"; hostname: string; port: number; tls: TlsClientOptions }
  | { transport: "unix"; path: string };

/** The address of a listener or a peer: TCP and TLS, or a Unix socket. */
export type Addr = Deno.NetAddr | Deno.UnixAddr;

/** Strips the brackets a user may put around an IPv6 address. */
export function bareHost(host: string): string {
  return host.replace(/^\[(.*)\]$/, "$1");
}

/**
 * Formats an address as a user writes it: `HOST:PORT` (an IPv6 host in
 * brackets) for TCP and TLS, the path for a Unix socket.
 */
export function formatAddr(
  addr: Addr | { hostname: string; port: number },
): string {
  if ("path" in addr) return addr.path || "(unnamed unix socket)";
  const host = bareHost(addr.hostname);
  return host.includes(":") ? `[${host}]:${addr.port}` : `${host}:${addr.port}`;
}

/** Where an endpoint is, as {@linkcode formatAddr} writes it. */
export function formatEndpoint(
  endpoint: ListenEndpoint | ConnectEndpoint,
): string {
  return endpoint.transport === "unix" ? endpoint.path : formatAddr(endpoint);
}

/** The line every server prints once it is ready, for scripts to wait on. */
export function listeningLine(addr: Addr): string {
  return `listening on ${formatAddr(addr)}`;
}

/** Prints {@linkcode listeningLine} on stdout. */
export function printListening(addr: Addr): void {
  console.log(listeningLine(addr));
}

/**
 * Reads a {@linkcode listeningLine} back: the TCP/TLS address or the Unix
 * socket's path; undefined for any other line.
 */
export function parseListeningLine(
  line: string,
): { hostname: string; port: number } | { path: string } | undefined {
  const match = line.match(/^listening on (.+)$/);
  if (!match) return undefined;
  const where = match[1]!;
  const net = where.match(/^(?:\[([0-9a-fA-F:.%\w-]+)\]|([^:/\[\]]+)):(\d+)$/);
  if (net) return { hostname: net[1] ?? net[2]!, port: Number(net[3]) };
  return { path: where };
}

/**
 * Binds a Unix socket at `path` with `bind`. A socket file nobody serves
 * (left by a server that was killed) is replaced; a live one is "address in
 * use" (`serving` says how a live one serves: "listening", "receiving").
 * `isLive` tells the two apart: only a connect, or a datagram, can. Shared
 * by the stream listeners here and the UDP echo's datagram socket.
 */
export async function bindUnixPath<T>(
  path: string,
  bind: () => T,
  isLive: () => Promise<boolean>,
  serving: string,
): Promise<T> {
  try {
    return bind();
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  }
  if (!Deno.lstatSync(path).isSocket) {
    throw new CliError(
      `Cannot listen on ${path}: a file that is not a socket is in the way`,
    );
  }
  if (await isLive()) {
    throw new CliError(
      `Cannot listen on ${path}: address already in use (a server is ` +
        `${serving} there)`,
    );
  }
  Deno.removeSync(path);
  return bind();
}

/**
 * Binds a Unix stream listener at `path`, replacing a stale socket file
 * (one that refuses a connect). Deno removes the file when the listener
 * closes.
 */
function listenUnix(path: string): Promise<Deno.Listener> {
  return bindUnixPath(
    path,
    () => Deno.listen({ transport: "unix", path }),
    async () => {
      try {
        (await Deno.connect({ transport: "unix", path })).close();
        return true;
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionRefused) return false;
        throw error;
      }
    },
    "listening",
  );
}

/**
 * Binds a listener for `endpoint`, turning a failure into a one-line
 * {@linkcode CliError} that names the address (or path) and the cause: the
 * address is in use, a certificate and key do not match, and the like.
 *
 * Requires `--allow-net` (TCP, TLS), or `--allow-read=PATH --allow-write=PATH`
 * (a Unix socket).
 *
 * @example
 * ```ts
 * import { listen } from "./_net.ts";
 *
 * using listener = await listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * console.log((listener.addr as Deno.NetAddr).port > 0); // true
 * ```
 */
export async function listen(endpoint: ListenEndpoint): Promise<Deno.Listener> {
  const where = formatEndpoint(endpoint);
  try {
    switch (endpoint.transport) {
      case "tcp":
        return Deno.listen({
          hostname: bareHost(endpoint.hostname),
          port: endpoint.port,
          transport: "tcp",
          ...(endpoint.reusePort ? { reusePort: true } : {}),
        });
      case "tls":
        return Deno.listenTls({
          hostname: bareHost(endpoint.hostname),
          port: endpoint.port,
          transport: "tcp",
          cert: endpoint.tls.cert,
          key: endpoint.tls.key,
          ...(endpoint.tls.alpn ? { alpnProtocols: endpoint.tls.alpn } : {}),
          ...(endpoint.reusePort ? { reusePort: true } : {}),
        });
      case "unix":
        return await listenUnix(endpoint.path);
    }
  } catch (error) {
    if (error instanceof CliError) throw error;
    const reason = endpoint.transport === "tls" && isTlsError(error) ||
        /No (keys|certificates) found/.test(String(error))
      ? describeTlsError(error)
      : describeError(error);
    throw new CliError(`Cannot listen on ${where}: ${reason}`, {
      cause: error,
    });
  }
}

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** Give up after this many ms (connect and TLS handshake). Default none. */
  timeout?: number;
  /** Aborting it gives up. */
  signal?: AbortSignal;
}

/**
 * A connect that failed: `reason` is the one-line cause (refused, timed
 * out, certificate expired, ...), `message` says where as well.
 */
export class ConnectError extends Error {
  /** The cause in a few words, for a message of the caller's own. */
  readonly reason: string;
  /** Builds the error for `where` with `reason`. */
  constructor(where: string, reason: string, options?: ErrorOptions) {
    super(`Cannot connect to ${where}: ${reason}`, options);
    this.name = "ConnectError";
    this.reason = reason;
  }
}

/**
 * Connects to `endpoint` and, for TLS, completes the handshake, so that a
 * certificate failure is reported here, as a {@linkcode ConnectError} with
 * its cause, and not by the first read.
 *
 * Requires `--allow-net` (TCP, TLS), or `--allow-read=PATH --allow-write=PATH`
 * (a Unix socket).
 *
 * @example
 * ```ts
 * import { connect, listen } from "./_net.ts";
 *
 * using listener = await listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * using conn = await connect({ transport: "tcp", hostname: "127.0.0.1", port }, { timeout: 5_000 });
 * ```
 */
export async function connect(
  endpoint: ConnectEndpoint,
  options: ConnectOptions = {},
): Promise<Deno.Conn> {
  const where = formatEndpoint(endpoint);
  // A timer of our own rather than AbortSignal.timeout, so that it is cleared
  // as soon as the connect settles.
  const giveUp = new AbortController();
  const timer = options.timeout === undefined
    ? undefined
    : setTimeout(() => giveUp.abort(), options.timeout);
  const onAbort = () => giveUp.abort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) giveUp.abort();
  let conn: Deno.Conn | undefined;
  try {
    conn = await open(endpoint, giveUp.signal);
    if (giveUp.signal.aborted) throw new DOMException("gave up", "AbortError");
    if (endpoint.transport === "tls") {
      // A handshake cannot be aborted but by closing its connection.
      const tls = conn as Deno.TlsConn;
      const close = () => tls.close();
      giveUp.signal.addEventListener("abort", close, { once: true });
      try {
        await tls.handshake();
      } finally {
        giveUp.signal.removeEventListener("abort", close);
      }
    }
    return conn;
  } catch (error) {
    try {
      conn?.close();
    } catch {
      // Closed by the give-up already.
    }
    let reason: string;
    if (giveUp.signal.aborted && options.signal?.aborted) {
      reason = "cancelled";
    } else if (giveUp.signal.aborted) {
      reason = `timed out after ${options.timeout! / 1000} s`;
    } else if (endpoint.transport === "tls") {
      // The server's refusal (an alert on our client certificate, with TLS
      // 1.2; a hang-up; no TLS at all) says more than our own reading.
      reason = describeTlsConnectFailure(error) ??
        (isTlsError(error) ? describeTlsError(error) : describeError(error));
    } else {
      reason = describeError(error);
    }
    throw new ConnectError(where, reason, { cause: error });
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** Opens the connection itself, as the endpoint's transport does it. */
async function open(
  endpoint: ConnectEndpoint,
  signal: AbortSignal,
): Promise<Deno.Conn> {
  switch (endpoint.transport) {
    case "tcp": {
      const conn = await Deno.connect({
        hostname: bareHost(endpoint.hostname),
        port: endpoint.port,
        signal,
      });
      return conn;
    }
    case "tls": {
      const tls = endpoint.tls;
      const common = {
        ...(tls.caCerts ? { caCerts: tls.caCerts } : {}),
        ...(tls.alpn ? { alpnProtocols: tls.alpn } : {}),
      };
      if (tls.serverName !== undefined) {
        // connectTls verifies the host it connects to; for another name,
        // connect first and start TLS with that name (no client certificate
        // then: startTls takes none).
        const tcp = await Deno.connect({
          hostname: bareHost(endpoint.hostname),
          port: endpoint.port,
          signal,
        });
        return await Deno.startTls(tcp, {
          hostname: tls.serverName,
          ...common,
        });
      }
      if (signal.aborted) throw new DOMException("gave up", "AbortError");
      const pending = Deno.connectTls({
        hostname: bareHost(endpoint.hostname),
        port: endpoint.port,
        ...common,
        ...(tls.cert !== undefined && tls.key !== undefined
          ? { cert: tls.cert, key: tls.key }
          : {}),
      });
      // connectTls takes no signal: a give-up closes what it brings.
      return await new Promise<Deno.Conn>((resolve, reject) => {
        const onAbort = () => {
          pending.then((conn) => conn.close(), () => {});
          reject(new DOMException("gave up", "AbortError"));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        pending.then(resolve, reject).finally(() =>
          signal.removeEventListener("abort", onAbort)
        );
      });
    }
    case "unix":
      return await Deno.connect({ transport: "unix", path: endpoint.path });
  }
}

// ---------------------------------------------------------------------------
// Client-side helpers
// ---------------------------------------------------------------------------

/** What {@linkcode writeAll} writes to: a `Deno.Conn` of any transport. */
export interface ByteWriter {
  /** Writes some of `bytes`; returns how many were written. */
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * Writes all of `bytes` to `conn`: a write may take only part of them. A
 * whole write allocates nothing, so a per-message hot path may call it; a
 * partial one (rare) takes a view of the rest.
 *
 * @param conn The connection (TCP, TLS or a Unix socket).
 * @param bytes What to write.
 *
 * @example
 * ```ts
 * import { connect, listen, writeAll } from "./_net.ts";
 *
 * using listener = await listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * using conn = await connect({ transport: "tcp", hostname: "127.0.0.1", port });
 * await writeAll(conn, new TextEncoder().encode("hello\n"));
 * ```
 */
export async function writeAll(
  conn: ByteWriter,
  bytes: Uint8Array,
): Promise<void> {
  let n = await conn.write(bytes);
  while (n < bytes.length) n += await conn.write(bytes.subarray(n));
}
