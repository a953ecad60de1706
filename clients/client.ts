#!/usr/bin/env -S deno run --allow-net
/**
 * The notes' "Client Code": the Test Client. It resolves the server's name
 * (the notes' `gethostbyname`, through the system resolver, `/etc/hosts`
 * included), connects, reads the greeting line, sends `Test Client\n`, reads
 * the next line, sends `Goodbye\n`, and closes.
 *
 * It departs from the notes on purpose: lines are read up to `\n` however
 * TCP splits them (the notes read exactly 12 bytes, then one `recv()`), every
 * step has a timeout, an IPv6 literal works, and it closes at once instead of
 * waiting for Enter. It speaks to any server that speaks these lines, over
 * TCP, TLS (`--tls`) or a Unix socket (`--unix PATH`), through the network
 * layer (`_net.ts`).
 *
 * Requires `--allow-net` (a Unix socket: `--allow-net=unix:PATH
 * --allow-read=PATH --allow-write=PATH`), and `--allow-read` of the files
 * `--ca`, `--cert` and `--key` name.
 *
 * @module
 */

import { isIP } from "node:net";
import { lookup } from "node:dns/promises";
import {
  CliError,
  type CommandSpec,
  describeError,
  NOTES_PORT,
  parseCommandLine,
  parseSeconds,
  runMain,
} from "../_cli.ts";
import {
  closeQuietly,
  DeadlineError,
  escapeControl,
  LineReader,
  MAX_LINE_BYTES,
  withDeadline,
  writeText,
} from "../_line_io.ts";
import {
  bareHost,
  connect,
  type ConnectEndpoint,
  ConnectError,
  formatEndpoint,
  type TlsClientOptions,
} from "../_net.ts";
import {
  CLIENT_ENDPOINT_OPTIONS,
  connectEndpoint,
  parseClientEndpoint,
  TLS_LIMITS_HELP,
} from "../_net_options.ts";
import { describeTlsAlert } from "../_tls_errors.ts";

/** Options of {@linkcode runTestClient}. */
export interface TestClientOptions {
  /** Server name, IPv4 or IPv6 literal (brackets allowed). Default `127.0.0.1`. */
  host?: string;
  /** Server port. Default 39304 (the notes' `0x9988`). */
  port?: number;
  /** Connect to the Unix socket at this path instead of `host` and `port`. */
  unix?: string;
  /**
   * Speak TLS: how the server is verified (against `tls.serverName`, or the
   * host as given) and what is presented. Not with `unix`.
   */
  tls?: TlsClientOptions;
  /**
   * Bound on resolving, connecting (with the TLS handshake), and each read
   * and write, in ms. Default 10000.
   */
  timeout?: number;
  /** Receives the transcript lines. Default `console.log`. */
  log?: (line: string) => void;
}

export type { TlsClientOptions };

/**
 * Resolves `host` as `gethostbyname` would: an address literal as is, a
 * name through the system resolver (`/etc/hosts` included).
 *
 * Requires `--allow-net` (for the name).
 *
 * @param host A name or an address literal; an IPv6 literal may be bracketed.
 * @param timeout Bound on the lookup, in ms.
 * @returns The first address the name resolves to.
 * @throws {CliError} `Cannot resolve address [HOST]: REASON`.
 * @throws {RangeError} If `host` is empty.
 *
 * @example
 * ```ts
 * import { resolveHost } from "./client.ts";
 *
 * console.log(await resolveHost("127.0.0.1")); // "127.0.0.1"
 * ```
 */
export async function resolveHost(
  host: string,
  timeout = 10_000,
): Promise<string> {
  const bare = bareHost(host);
  if (bare === "") {
    throw new RangeError(
      `Cannot resolve address "${host}": expected a host name or an IP address`,
    );
  }
  if (isIP(bare)) return bare;
  try {
    const found = await withDeadline(
      lookup(bare),
      timeout,
      "resolve",
      () => {},
    );
    return found.address;
  } catch (error) {
    const code = (error as { code?: string }).code;
    const reason = code === "ENOTFOUND"
      ? "no such host (ENOTFOUND)"
      : code ?? describeError(error);
    throw new CliError(`Cannot resolve address [${host}]: ${reason}`);
  }
}

/**
 * Where the conversation goes. A Unix socket is its path. Over TCP, the
 * address the host resolves to through the system resolver (the notes'
 * `gethostbyname`). Over TLS the certificate must be verified against the
 * name the user gave, never against the address it led to (a certificate for
 * `example.test` does not name 192.0.2.1): an address literal, or a host with
 * `serverName`, goes to the resolved address; a name goes to `connectTls`
 * itself, which resolves it with the same system resolver, verifies the
 * certificate against it and sends it as SNI (and, unlike a separate
 * `serverName`, can present a client certificate). The name is resolved here
 * all the same, so that one that does not resolve fails alike everywhere.
 */
async function endpointOf(
  options: TestClientOptions,
  timeout: number,
): Promise<ConnectEndpoint> {
  if (options.unix !== undefined) return connectEndpoint(options);
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? NOTES_PORT;
  const address = await resolveHost(host, timeout);
  const tls = options.tls;
  // A name is verified as the user gave it; connectTls resolves it alike.
  const byName = tls !== undefined && tls.serverName === undefined &&
    isIP(bareHost(host)) === 0;
  return connectEndpoint({
    hostname: byName ? bareHost(host) : address,
    port,
    ...(tls ? { tls } : {}),
  });
}

/**
 * Holds the notes' conversation with a Test Server and returns the lines the
 * server sent.
 *
 * Requires `--allow-net` (a Unix socket: `--allow-net=unix:PATH
 * --allow-read=PATH --allow-write=PATH`).
 *
 * @param options Where the server is, over what, the timeout, where the
 * transcript goes.
 * @returns The two lines received from the server, without their `\n`.
 * @throws {CliError} One line naming the host (and port) or the socket path
 * and what failed: the name does not resolve, the connect is refused or
 * times out, a certificate is refused (expired, for another name, from an
 * unknown CA; a client key that does not match its certificate).
 *
 * @example Talk to a Test Server started here
 * ```ts
 * import { serveSequential } from "../servers/sequential.ts";
 * import { runTestClient } from "./client.ts";
 *
 * await using server = await serveSequential({ port: 0, log: () => {} });
 * const lines = await runTestClient({ port: server.addr.port, log: () => {} });
 * console.log(lines); // ["Test Server", "Say Goodbye"]
 * ```
 */
export async function runTestClient(
  options: TestClientOptions = {},
): Promise<string[]> {
  const timeout = options.timeout ?? 10_000;
  const log = options.log ?? ((line: string) => console.log(line));
  const endpoint = await endpointOf(options, timeout);
  const where = formatEndpoint(endpoint);

  log(`Client connecting to: ${options.unix ?? options.host ?? "127.0.0.1"}`);
  let conn: Deno.Conn;
  try {
    conn = await connect(endpoint, { timeout });
  } catch (error) {
    if (!(error instanceof ConnectError)) throw error;
    throw new CliError(error.message, { cause: error });
  }

  const received: string[] = [];
  const reader = new LineReader(conn, MAX_LINE_BYTES, timeout);
  async function expectLine(): Promise<void> {
    const line = await reader.readLine();
    if (line === null) {
      throw new CliError(`${where} closed the connection before a line`);
    }
    received.push(line);
    log(`got '${escapeControl(line)}'`); // a server cannot drive our terminal
  }
  try {
    if (options.tls?.alpn !== undefined) {
      // The handshake is done (connect waits for it): this only reads it.
      const { alpnProtocol } = await (conn as Deno.TlsConn).handshake();
      log(`ALPN: ${alpnProtocol ?? "none agreed"}`);
    }
    await expectLine();
    await writeText(conn, "Test Client\n", timeout);
    await expectLine();
    await writeText(conn, "Goodbye\n", timeout);
  } catch (error) {
    if (error instanceof CliError) throw error;
    const reason = error instanceof DeadlineError
      ? error.message
      : describeTlsAlert(error) ?? describeError(error);
    throw new CliError(`${where}: ${reason}`);
  } finally {
    closeQuietly(conn);
  }
  return received;
}

const COMMAND: CommandSpec = {
  name: "clients/client.ts",
  summary: "The notes' Test Client: connects, reads the greeting, sends " +
    "'Test Client', reads the reply, sends 'Goodbye', closes.",
  options: {
    ...CLIENT_ENDPOINT_OPTIONS,
    timeout: {
      type: "string",
      default: "10",
      arg: "SECONDS",
      description:
        "Bound on resolving, connecting (with the TLS handshake), and each read and write.",
    },
  },
  epilog:
    `Over TLS the certificate is verified against --server-name, or else the
host as given (a name, not the address it resolves to).
${TLS_LIMITS_HELP}
--server-name and --cert do not combine: Deno sends a client certificate only
when it verifies the host it connects to.

Permissions: --allow-net; --allow-read=FILE for --ca, --cert, --key; a Unix
socket needs --allow-net=unix:PATH --allow-read=PATH --allow-write=PATH.

Exit status: 0 after the conversation, 1 if the name does not resolve, the
connection fails or times out, or a certificate is refused (one line naming
the cause), 2 on a usage mistake.`,
};

/** The command line: parse, talk to the server, exit 0 or 1. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  const timeout = parseSeconds(parsed.values.timeout, "--timeout");
  const endpoint = await parseClientEndpoint(parsed.values);
  await runTestClient(
    endpoint.transport === "unix" ? { unix: endpoint.path, timeout } : {
      host: endpoint.hostname,
      port: endpoint.port,
      ...(endpoint.transport === "tls" ? { tls: endpoint.tls } : {}),
      timeout,
    },
  );
  return 0;
}

if (import.meta.main) runMain(main);
