/**
 * The endpoint options of the command line, declared once for every script
 * (the servers' `--hostname`, the clients' `--host`, `--port`, `--unix`,
 * `--tls`, `--cert`, `--key`, `--alpn`, the servers' `--allow` and
 * `--deny`, the clients' `--ca` and `--server-name`), and
 * their reading into the endpoints of `_net.ts`, which listens and
 * connects.
 *
 * Private to this package: scripts import it, `mod.ts` does not re-export it.
 *
 * @module
 */

import { type AccessControl, AccessList } from "./_access.ts";
import {
  CliError,
  fileError,
  NOTES_PORT,
  type OptionSpec,
  parseHost,
  parsePort,
  UsageError,
} from "./_cli.ts";
import {
  bareHost,
  type ConnectEndpoint,
  type ListenEndpoint,
  type TlsClientOptions,
  type TlsServerOptions,
} from "./_net.ts";

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
    throw fileError("read", option, path, error);
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
