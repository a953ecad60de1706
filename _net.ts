/**
 * The network layer every server of socket-notes shares. This part is the
 * accept loop: the notes' `accept()` in a loop, with what their one-client
 * programs never meet, a listener that must go on serving whatever one
 * connection or the system does to it.
 *
 * Private to this package: scripts import it, `mod.ts` does not re-export it.
 *
 * @module
 */

import { type AccessControl, AccessList, admits } from "./_access.ts";
import {
  CliError,
  describeError,
  isPeerGone,
  NOTES_PORT,
  type OptionSpec,
  parseHost,
  parsePort,
  sleep,
  UsageError,
} from "./_cli.ts";

/**
 * What a failed `accept()` says, and so what the loop does next:
 * - `closed`: the listener was closed (shutdown); stop.
 * - `connection`: the failure belongs to the one connection being accepted
 *   (it was reset or aborted in the listen backlog); accept again at once.
 * - `exhausted`: the process or the system is out of a resource (open
 *   files, buffers, memory); retrying at once would spin, so back off.
 * - `other`: anything else; back off too, as the safe choice.
 */
export type AcceptFailure = "closed" | "connection" | "exhausted" | "other";

/**
 * Errors of the connection, not of the listener. Linux's accept(2) passes a
 * new connection's pending network error up from `accept()` and asks callers
 * to retry on these as on EAGAIN; Deno adds ENOTCONN, from reading the peer's
 * address of a connection that was reset before it was accepted.
 */
const CONNECTION_CODES: ReadonlySet<string> = new Set([
  "ENOTCONN",
  "ECONNABORTED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EPROTO",
  "EPERM", // a firewall rule refused this connection
  "ENOPROTOOPT",
  "EOPNOTSUPP",
  "ENETDOWN",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EHOSTUNREACH",
  "ENONET",
]);

/** Out of a resource: only time (or a closed connection elsewhere) helps. */
const EXHAUSTION_CODES: ReadonlySet<string> = new Set([
  "EMFILE",
  "ENFILE",
  "ENOBUFS",
  "ENOMEM",
]);

/** Tells what a failed `accept()` means; see {@linkcode AcceptFailure}. */
export function classifyAcceptError(error: unknown): AcceptFailure {
  if (
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted
  ) return "closed";
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    if (CONNECTION_CODES.has(code)) return "connection";
    if (EXHAUSTION_CODES.has(code)) return "exhausted";
  }
  if (
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.TimedOut
  ) return "connection";
  return "other";
}

/** Counters an {@linkcode Acceptor} keeps. */
export interface AcceptCounters {
  /** Failed `accept()` calls that backed off (EMFILE and the like). */
  acceptErrors: number;
  /** Connections gone before they were accepted (reset in the backlog). */
  acceptAborted: number;
  /** Connections refused by `--allow`/`--deny`, closed at accept. */
  denied: number;
}

/** Options of {@linkcode Acceptor}. */
export interface AcceptorOptions {
  /** Aborting it ends {@linkcode Acceptor.accept} with `undefined`. */
  signal: AbortSignal;
  /** Where the loop's log lines go. */
  log: (line: string) => void;
  /** Counters to add to; a fresh object if omitted. */
  counters?: AcceptCounters;
  /** Who may connect (`--allow`, `--deny`); everyone if omitted. */
  access?: AccessControl;
}

/** First back-off after a resource error, in ms. */
const BACKOFF_FIRST = 100;
/** Longest back-off, in ms. */
const BACKOFF_MAX = 5_000;

/**
 * Accepts connections from a listener, one call at a time, and survives
 * every accept error: a connection lost before it was accepted is counted,
 * logged once per burst, and the next one is accepted at once; a resource
 * error backs off, 100 ms doubling to 5 s (mini-redis doubles from 1 s, but
 * a full second is long for a test server), so that EMFILE does not spin
 * (denoland/deno#10148).
 *
 * @example
 * ```ts
 * import { Acceptor } from "./_net.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const stop = new AbortController();
 * const acceptor = new Acceptor(listener, { signal: stop.signal, log: console.error });
 * stop.abort();
 * console.log(await acceptor.accept()); // undefined
 * ```
 */
export class Acceptor<C extends Deno.Conn = Deno.Conn> {
  /** The listener accepted from. */
  readonly #listener: Deno.Listener<C>;
  /** Ends the loop. */
  readonly #signal: AbortSignal;
  /** Where log lines go. */
  readonly #log: (line: string) => void;
  /** Counters, shared with the caller's stats. */
  readonly counters: AcceptCounters;
  /** The next back-off after a resource error, in ms. */
  #backoff = BACKOFF_FIRST;
  /** Connections lost at accept since the last one accepted. */
  #burst = 0;
  /** Who may connect; undefined for everyone. */
  readonly #access: AccessControl | undefined;
  /** Connections denied since the last one admitted. */
  #deniedBurst = 0;

  /** Builds an acceptor of `listener`; see {@linkcode AcceptorOptions}. */
  constructor(listener: Deno.Listener<C>, options: AcceptorOptions) {
    this.#listener = listener;
    this.#signal = options.signal;
    this.#log = options.log;
    this.counters = options.counters ??
      { acceptErrors: 0, acceptAborted: 0, denied: 0 };
    const access = options.access;
    this.#access = access?.allow || access?.deny ? access : undefined;
  }

  /**
   * Returns the next accepted connection, or `undefined` once the listener
   * is closed or the signal has aborted. Never throws.
   */
  async accept(): Promise<C | undefined> {
    while (!this.#signal.aborted) {
      let conn: C;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#signal.aborted) return undefined;
        const failure = classifyAcceptError(error);
        if (failure === "closed") return undefined;
        if (failure === "connection") {
          // The kernel's accept succeeded, so descriptors are not short.
          this.counters.acceptAborted++;
          this.#backoff = BACKOFF_FIRST;
          if (this.#burst++ === 0) {
            this.#log(
              `accept: a connection was gone before it was accepted (${
                describeError(error)
              }); accepting on, the rest of this burst is counted`,
            );
          }
          continue;
        }
        this.counters.acceptErrors++;
        this.#log(
          `accept failed: ${
            describeError(error)
          }; retry in ${this.#backoff} ms`,
        );
        await sleep(this.#backoff, this.#signal);
        this.#backoff = Math.min(this.#backoff * 2, BACKOFF_MAX);
        continue;
      }
      this.#backoff = BACKOFF_FIRST;
      if (this.#burst > 1) {
        this.#log(
          `accept: ${this.#burst} connections in all were gone before they were accepted`,
        );
      }
      this.#burst = 0;
      if (this.#access !== undefined && !this.#admit(conn)) continue;
      return conn;
    }
    return undefined;
  }

  /**
   * Applies `--allow`/`--deny`: a refused peer is closed here, before a byte
   * is read or sent (a TLS connection before its handshake), and logged
   * once per burst of refusals.
   */
  #admit(conn: C): boolean {
    const remote = conn.remoteAddr;
    if (!("hostname" in remote) || admits(this.#access!, remote.hostname)) {
      if (this.#deniedBurst > 1) {
        this.#log(`access: ${this.#deniedBurst} connections in all denied`);
      }
      this.#deniedBurst = 0;
      return true;
    }
    this.counters.denied++;
    if (this.#deniedBurst++ === 0) {
      this.#log(
        `access: denied ${
          formatAddr(remote)
        } (--allow/--deny); the rest of this burst is counted`,
      );
    }
    try {
      conn.close();
    } catch {
      // Already gone.
    }
    return false;
  }
}

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
 * The one-line cause of a TLS failure, from rustls's words: an expired
 * certificate, a name mismatch, an unknown CA, a key that does not match.
 * Anything else is {@linkcode describeError}'s reading.
 */
export function describeTlsError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const expired = message.match(/certificate expired.*not valid after (\d+)/);
  if (expired) {
    const when = new Date(Number(expired[1]) * 1000).toISOString()
      .replace(".000Z", "Z");
    return `certificate expired (not valid after ${when})`;
  }
  if (/certificate expired/.test(message)) return "certificate expired";
  if (/not valid yet|NotValidYet/.test(message)) {
    return "certificate not valid yet";
  }
  const name = message.match(
    /certificate not valid for name "([^"]*)"(?:; certificate is only valid for (.*))?/,
  );
  if (name) {
    const valid = name[2]
      ? ` (it is for ${
        [...name[2].matchAll(/\("([^"]*)"\)|\(([\d.:a-f]+)\)/g)]
          .map((m) => m[1] ?? m[2]).join(", ") || name[2]
      })`
      : "";
    return `certificate is not valid for "${name[1]}"${valid}; ` +
      `connect by a name it holds or give it with --server-name`;
  }
  if (/NotValidForName/.test(message)) {
    return "certificate is not valid for this name (see --server-name)";
  }
  if (/UnknownIssuer|UnknownCA|unknown ca/i.test(message)) {
    return "certificate signed by an unknown CA (trust its CA with --ca FILE)";
  }
  if (/KeyMismatch|keys may not be consistent/.test(message)) {
    return "the key does not match the certificate";
  }
  if (/BadCertificate|bad certificate/i.test(message)) {
    return "the peer rejected the certificate";
  }
  if (/No keys found/.test(message)) return "no private key in the key file";
  if (/No certificates found/.test(message)) {
    return "no certificate in the certificate file";
  }
  return describeError(error);
}

/** Whether `error` came from TLS (a handshake or a certificate). */
function isTlsError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : "";
  return /certificate|alert|KeyMismatch|keys may not|HandshakeFailure|tls/i
    .test(message);
}

/**
 * Binds a Unix socket at `path`. A socket file nobody listens on (left by a
 * server that was killed) is replaced; a live one is "address in use". Deno
 * removes the file when the listener closes.
 */
async function listenUnix(path: string): Promise<Deno.Listener> {
  try {
    return Deno.listen({ transport: "unix", path });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  }
  if (!Deno.lstatSync(path).isSocket) {
    throw new CliError(
      `Cannot listen on ${path}: a file that is not a socket is in the way`,
    );
  }
  // Only a connect tells a live socket from a stale one.
  let live = false;
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    live = true;
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
  }
  if (live) {
    throw new CliError(
      `Cannot listen on ${path}: address already in use (a server is ` +
        `listening there)`,
    );
  }
  Deno.removeSync(path);
  return Deno.listen({ transport: "unix", path });
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
// The endpoint options of the command line, declared once for every script
// ---------------------------------------------------------------------------

/**
 * What `--help` of every TLS-capable script says of what Deno cannot do.
 * (denoland/deno#26825: a Deno server cannot ask for client certificates.)
 */
export const TLS_LIMITS_HELP =
  `TLS: a Deno server cannot request client certificates (denoland/deno#26825);
--unix and --tls do not combine (Deno's TLS runs over TCP only).`;

/** `--key` and `--alpn`, the same on both sides. */
const TLS_KEY_AND_ALPN: Record<string, OptionSpec> = {
  key: {
    type: "string",
    arg: "FILE",
    description: "TLS: the private key of --cert (PEM).",
  },
  alpn: {
    type: "string",
    arg: "LIST",
    description: "TLS: ALPN protocols to offer, comma-separated.",
  },
};

/** The options of every server: where and how it listens, and who may connect. */
export const SERVER_ENDPOINT_OPTIONS: Record<string, OptionSpec> = {
  hostname: {
    type: "string",
    default: "127.0.0.1",
    arg: "ADDR",
    description: "Address to listen on.",
  },
  port: {
    type: "string",
    short: "p",
    default: String(NOTES_PORT),
    arg: "PORT",
    description: "Port to listen on; 0 picks a free one.",
  },
  unix: {
    type: "string",
    arg: "PATH",
    description:
      "Listen on a Unix socket at PATH instead (a stale socket file is replaced; removed on stop).",
  },
  tls: { type: "boolean", description: "Speak TLS (needs --cert and --key)." },
  cert: {
    type: "string",
    arg: "FILE",
    description: "TLS: the certificate chain to present (PEM).",
  },
  ...TLS_KEY_AND_ALPN,
  allow: {
    type: "string",
    multiple: true,
    arg: "LIST",
    description:
      "Only these may connect: IPv4/IPv6 addresses and CIDR prefixes, comma-separated (as ncat).",
  },
  deny: {
    type: "string",
    multiple: true,
    arg: "LIST",
    description: "These may not connect: addresses and prefixes, as --allow.",
  },
};

/** The options of every client: where it connects and how. */
export const CLIENT_ENDPOINT_OPTIONS: Record<string, OptionSpec> = {
  host: {
    type: "string",
    default: "127.0.0.1",
    arg: "HOST",
    description: "Server name or address (IPv6 may be in brackets).",
  },
  port: {
    type: "string",
    short: "p",
    default: String(NOTES_PORT),
    arg: "PORT",
    description: "Server port.",
  },
  unix: {
    type: "string",
    arg: "PATH",
    description: "Connect to the Unix socket at PATH instead.",
  },
  tls: { type: "boolean", description: "Speak TLS." },
  ca: {
    type: "string",
    arg: "FILE",
    description:
      "TLS: trust this CA (PEM) beside Deno's default roots (Mozilla's; DENO_TLS_CA_STORE=system adds the system's).",
  },
  "server-name": {
    type: "string",
    arg: "NAME",
    description:
      "TLS: the name verified in the certificate and sent as SNI (default the host).",
  },
  cert: {
    type: "string",
    arg: "FILE",
    description: "TLS: a client certificate to present (PEM, with --key).",
  },
  ...TLS_KEY_AND_ALPN,
};

/** The TLS options that need `--tls`, by side. */
const TLS_ONLY = {
  server: ["cert", "key", "alpn"],
  client: ["ca", "server-name", "cert", "key", "alpn"],
} as const;

/**
 * Reads a PEM file named by `option`; `marker` is what it must hold (as
 * `CERTIFICATE`, `PRIVATE KEY`).
 *
 * @throws {CliError} If it cannot be read or holds no such PEM block.
 */
async function readPem(
  path: string,
  option: string,
  marker: string,
): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const grant = error instanceof Deno.errors.NotCapable ||
        error instanceof Deno.errors.PermissionDenied
      ? ` (grant --allow-read=${path})`
      : "";
    throw new CliError(
      `Cannot read ${option} ${path}: ${describeError(error)}${grant}`,
    );
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${marker}-----`).test(text)) {
    throw new CliError(
      `Cannot use ${option} ${path}: it holds no PEM ${marker.toLowerCase()}`,
    );
  }
  return text;
}

/** Parses `--alpn` (comma-separated protocol names). */
function parseAlpn(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const list = String(value).split(",").map((p) => p.trim());
  if (list.some((p) => p === "")) {
    throw new UsageError(
      `Cannot parse --alpn "${value}": expected protocol names, comma-separated (as h2,http/1.1)`,
    );
  }
  return list;
}

/** Checks the combinations of the endpoint options on one side. */
function checkEndpointOptions(
  values: Record<string, unknown>,
  side: "server" | "client",
): void {
  if (values.tls !== true) {
    for (const name of TLS_ONLY[side]) {
      if (values[name] !== undefined) {
        throw new UsageError(`--${name} needs --tls`);
      }
    }
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new UsageError(
      values.cert === undefined ? "--key needs --cert" : "--cert needs --key",
    );
  }
  if (values.unix !== undefined) {
    if (String(values.unix) === "") {
      throw new UsageError(`Cannot parse --unix "": expected a socket path`);
    }
    if (values.tls === true) {
      throw new UsageError(
        "--tls and --unix do not combine: Deno's TLS runs over TCP only",
      );
    }
  }
}

/**
 * Where and how a server listens, and who may connect: the options every
 * server of this package takes, as a library caller passes them.
 */
export interface ServerEndpointOptions {
  /** Address to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Port to bind; 0 picks a free one. */
  port?: number;
  /** Listen on a Unix socket at this path instead of TCP. */
  unix?: string;
  /** Speak TLS with this certificate and key. */
  tls?: TlsServerOptions;
  /** Only these may connect: addresses and CIDR prefixes, comma-separated. */
  allow?: string;
  /** These may not connect: addresses and CIDR prefixes, comma-separated. */
  deny?: string;
}

/**
 * The endpoint a server's options describe (`port` defaults to
 * `defaultPort`).
 *
 * @throws {RangeError} If `allow` or `deny` is given with `unix`, or TLS
 * with `unix`.
 */
export function listenEndpoint(
  options: ServerEndpointOptions & { reusePort?: boolean },
  defaultPort: number,
): ListenEndpoint {
  if (options.unix !== undefined) {
    checkUnixWithoutTls(options);
    if (options.allow !== undefined || options.deny !== undefined) {
      throw new RangeError(
        "Cannot use allow or deny with unix: they take IP addresses",
      );
    }
    return { transport: "unix", path: options.unix };
  }
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? defaultPort;
  const reusePort = options.reusePort ? { reusePort: true } : {};
  return options.tls === undefined
    ? { transport: "tcp", hostname, port, ...reusePort }
    : { transport: "tls", hostname, port, ...reusePort, tls: options.tls };
}

/** Deno's TLS runs over TCP: a Unix socket cannot take it. */
function checkUnixWithoutTls(options: { unix?: string; tls?: unknown }): void {
  if (options.tls !== undefined) {
    throw new RangeError(
      `Cannot use unix "${options.unix}" with tls: Deno's TLS runs over TCP only`,
    );
  }
}

/**
 * The endpoint a client's options describe: the Unix socket `unix`, or
 * `hostname` and `port` over TCP, or TLS with `tls`.
 *
 * @throws {RangeError} If `unix` comes with `tls`, or neither `unix` nor a
 * `hostname` and `port` is given.
 *
 * @example
 * ```ts
 * import { connectEndpoint } from "./_net.ts";
 *
 * console.log(connectEndpoint({ unix: "/tmp/echo.sock" })); // { transport: "unix", path: "/tmp/echo.sock" }
 * ```
 */
export function connectEndpoint(options: {
  hostname?: string;
  port?: number;
  unix?: string;
  tls?: TlsClientOptions;
}): ConnectEndpoint {
  if (options.unix !== undefined) {
    checkUnixWithoutTls(options);
    return { transport: "unix", path: options.unix };
  }
  const { hostname, port, tls } = options;
  if (hostname === undefined || port === undefined) {
    throw new RangeError("Cannot connect: give unix, or hostname and port");
  }
  return tls === undefined
    ? { transport: "tcp", hostname, port }
    : { transport: "tls", hostname, port, tls };
}

/**
 * The access lists a server's options give.
 *
 * @throws {UsageError} Quoting an entry that is not an address or prefix.
 */
export function accessControl(options: ServerEndpointOptions): AccessControl {
  const access: AccessControl = {};
  if (options.allow !== undefined) {
    access.allow = AccessList.parse(options.allow, "--allow");
  }
  if (options.deny !== undefined) {
    access.deny = AccessList.parse(options.deny, "--deny");
  }
  return access;
}

/**
 * Reads a server's endpoint options from parsed command-line values
 * ({@linkcode SERVER_ENDPOINT_OPTIONS}), reading certificate files and
 * checking the access lists.
 *
 * @throws {UsageError} On a bad value or a combination that does not go.
 * @throws {CliError} If a certificate or key file cannot be read.
 */
export async function parseServerEndpoint(
  values: Record<string, unknown>,
): Promise<ServerEndpointOptions> {
  checkEndpointOptions(values, "server");
  const result: ServerEndpointOptions = {};
  for (const name of ["allow", "deny"] as const) {
    const given = values[name] as string[] | undefined;
    if (given === undefined || given.length === 0) continue;
    result[name] = given.join(",");
    AccessList.parse(result[name], `--${name}`);
  }
  if (values.unix !== undefined) {
    if (result.allow !== undefined || result.deny !== undefined) {
      throw new UsageError(
        "--allow and --deny take IP addresses: they do not apply to --unix",
      );
    }
    return { ...result, unix: String(values.unix) };
  }
  result.hostname = parseHost(values.hostname, "--hostname");
  result.port = parsePort(values.port);
  if (values.tls !== true) return result;
  if (values.cert === undefined) {
    throw new UsageError("--tls needs --cert FILE and --key FILE");
  }
  const alpn = parseAlpn(values.alpn);
  result.tls = {
    cert: await readPem(String(values.cert), "--cert", "CERTIFICATE"),
    key: await readPem(String(values.key), "--key", "PRIVATE KEY"),
    ...(alpn ? { alpn } : {}),
  };
  return result;
}

/**
 * Reads a client's endpoint from parsed command-line values
 * ({@linkcode CLIENT_ENDPOINT_OPTIONS}), reading certificate files.
 *
 * @throws {UsageError} On a bad value or a combination that does not go.
 * @throws {CliError} If a certificate, key or CA file cannot be read.
 */
export async function parseClientEndpoint(
  values: Record<string, unknown>,
): Promise<ConnectEndpoint> {
  checkEndpointOptions(values, "client");
  if (values.unix !== undefined) {
    return { transport: "unix", path: String(values.unix) };
  }
  const hostname = parseHost(values.host, "--host");
  const port = parsePort(values.port);
  if (values.tls !== true) return { transport: "tcp", hostname, port };
  const serverName = values["server-name"] === undefined
    ? undefined
    : parseHost(values["server-name"], "--server-name");
  if (serverName !== undefined && values.cert !== undefined) {
    throw new UsageError(
      "--server-name and --cert do not combine: Deno sends a client " +
        "certificate only when it verifies the host it connects to",
    );
  }
  const alpn = parseAlpn(values.alpn);
  const tls: TlsClientOptions = {
    ...(values.ca === undefined ? {} : {
      caCerts: [await readPem(String(values.ca), "--ca", "CERTIFICATE")],
    }),
    ...(serverName === undefined ? {} : { serverName: bareHost(serverName) }),
    ...(values.cert === undefined ? {} : {
      cert: await readPem(String(values.cert), "--cert", "CERTIFICATE"),
      key: await readPem(String(values.key), "--key", "PRIVATE KEY"),
    }),
    ...(alpn ? { alpn } : {}),
  };
  return { transport: "tls", hostname, port, tls };
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

/** What a TLS alert from the server most likely means, by its rustls name. */
const ALERT_HINTS: Record<string, string> = {
  CertificateRequired: "it requires a client certificate (--cert and --key)",
  UnknownCA: "it does not trust the CA of our client certificate",
  BadCertificate: "it refused our client certificate",
  CertificateUnknown: "it refused our client certificate",
  CertificateExpired: "it says our client certificate has expired",
  NoApplicationProtocol: "it speaks none of the --alpn protocols offered",
  HandshakeFailure:
    "it accepts nothing we offered (it may require a client certificate: --cert and --key)",
};

/**
 * The one-line cause of a TLS alert the server sent, or `undefined` if
 * `error` is not one: the server's verdict (on our client certificate, say),
 * which {@linkcode describeTlsError} would read as a fault of the server's
 * certificate (`UnknownCA`). With TLS 1.2 it ends the handshake, so it is
 * the cause of a {@linkcode ConnectError}; with TLS 1.3 a client's handshake
 * is done before the server has judged its certificate, and the first read
 * or write meets the alert, after {@linkcode connect} has returned.
 *
 * @param error What a read or write threw.
 * @returns The cause, as `the server refused the TLS session (alert
 * CertificateRequired): it requires a client certificate (--cert and --key)`.
 *
 * @example
 * ```ts
 * import { describeTlsAlert } from "./_net.ts";
 *
 * console.log(describeTlsAlert(new Error("received fatal alert: UnknownCA")));
 * ```
 */
export function describeTlsAlert(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const alert = message.match(/received fatal alert: (\w+)/)?.[1];
  if (alert === undefined) return undefined;
  const hint = ALERT_HINTS[alert];
  return `the server refused the TLS session (alert ${alert})${
    hint ? `: ${hint}` : ""
  }`;
}

/**
 * The one-line cause of a TLS handshake the server hung up on (reset or
 * closed, no alert read: it sent none, or our next write met the reset
 * first), or `undefined` if `error` is not that.
 */
function describeTlsHangup(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (
    !isPeerGone(error) &&
    !/unexpected ?eof|peer closed connection/i.test(message)
  ) return undefined;
  return "the server closed the connection during the TLS handshake (it " +
    "may require a client certificate, --cert and --key, or not speak TLS)";
}

/** A peer whose answer to our ClientHello is not TLS, or `undefined`. */
function describeNotTls(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (/got ClientHello when expecting/.test(message)) {
    return "the server sent our ClientHello back: it does not speak TLS " +
      "(an echo server without --tls?)";
  }
  if (/InvalidContentType|wrong version number/.test(message)) {
    return "the server does not speak TLS (what it sent is no TLS record)";
  }
  return undefined;
}

/**
 * The one-line cause of a failed TLS connect as the client sees the server
 * refuse it, or `undefined` when the cause is the client's own finding
 * (then {@linkcode ConnectError}'s `reason` says it): the server's alert
 * ({@linkcode describeTlsAlert}), a hang-up during the handshake, or a
 * server that does not speak TLS. For the cause of a `ConnectError` over
 * TLS, or a `node:tls` connect error; after the handshake a reset is only a
 * reset.
 *
 * @param error The cause of a failed TLS connect.
 * @returns The cause, as `the server closed the connection during the TLS
 * handshake (...)`, or `undefined`.
 *
 * @example
 * ```ts
 * import { describeTlsConnectFailure } from "./_net.ts";
 *
 * console.log(describeTlsConnectFailure(new Deno.errors.BrokenPipe("Broken pipe")));
 * ```
 */
export function describeTlsConnectFailure(error: unknown): string | undefined {
  return describeTlsAlert(error) ?? describeTlsHangup(error) ??
    describeNotTls(error);
}
