/**
 * The notes' "Client Code": the Test Client. It resolves the server's name
 * (the notes' `gethostbyname`, through the system resolver, `/etc/hosts`
 * included), connects, reads the greeting line, sends `Test Client\n`, reads
 * the next line, sends `Goodbye\n`, and closes.
 *
 * It departs from the notes on purpose: lines are read up to `\n` however
 * TCP splits them (the notes read exactly 12 bytes, then one `recv()`), every
 * step has a timeout, an IPv6 literal works, and it closes at once instead of
 * waiting for Enter. It speaks to any server that speaks these lines.
 *
 * Requires `--allow-net`.
 *
 * @module
 */

import { isIP } from "node:net";
import { lookup } from "node:dns/promises";
import {
  CliError,
  type CommandSpec,
  describeError,
  formatAddress,
  NOTES_PORT,
  parseCommandLine,
  parseHost,
  parsePort,
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

/** Options of {@linkcode runTestClient}. */
export interface TestClientOptions {
  /** Server name, IPv4 or IPv6 literal (brackets allowed). Default `127.0.0.1`. */
  host?: string;
  /** Server port. Default 39304 (the notes' `0x9988`). */
  port?: number;
  /** Bound on resolving, connecting, and each read and write, in ms. Default 10000. */
  timeout?: number;
  /** Receives the transcript lines. Default `console.log`. */
  log?: (line: string) => void;
}

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
  const bare = host.replace(/^\[(.*)\]$/, "$1");
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
 * Holds the notes' conversation with a Test Server and returns the lines the
 * server sent.
 *
 * Requires `--allow-net`.
 *
 * @param options Where the server is, the timeout, where the transcript goes.
 * @returns The two lines received from the server, without their `\n`.
 * @throws {CliError} One line naming the host (and port) and what failed.
 *
 * @example Talk to a Test Server started here
 * ```ts
 * import { serveSequential } from "../servers/sequential.ts";
 * import { runTestClient } from "./client.ts";
 *
 * await using server = serveSequential({ port: 0, log: () => {} });
 * const lines = await runTestClient({ port: server.addr.port, log: () => {} });
 * console.log(lines); // ["Test Server", "Say Goodbye"]
 * ```
 */
export async function runTestClient(
  options: TestClientOptions = {},
): Promise<string[]> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? NOTES_PORT;
  const timeout = options.timeout ?? 10_000;
  const log = options.log ?? ((line: string) => console.log(line));
  const address = await resolveHost(host, timeout);
  const where = formatAddress({ hostname: address, port });

  log(`Client connecting to: ${host}`);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({
      hostname: address,
      port,
      signal: AbortSignal.timeout(timeout),
    });
  } catch (error) {
    const reason = error instanceof DOMException
      ? `timed out after ${timeout / 1000} s`
      : describeError(error);
    throw new CliError(`Cannot connect to ${where}: ${reason}`);
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
    await expectLine();
    await writeText(conn, "Test Client\n", timeout);
    await expectLine();
    await writeText(conn, "Goodbye\n", timeout);
  } catch (error) {
    if (error instanceof CliError) throw error;
    const reason = error instanceof DeadlineError
      ? error.message
      : describeError(error);
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
    host: {
      type: "string",
      default: "127.0.0.1",
      arg: "HOST",
      description: "Server name, IPv4 or IPv6 address.",
    },
    port: {
      type: "string",
      short: "p",
      default: String(NOTES_PORT),
      arg: "PORT",
      description: "Server port.",
    },
    timeout: {
      type: "string",
      default: "10",
      arg: "SECONDS",
      description: "Bound on resolving, connecting, and each read and write.",
    },
  },
  epilog:
    "Exit status: 0 after the conversation, 1 if the name does not resolve,\n" +
    "the connection fails or times out, 2 on a usage mistake.",
};

/** The command line: parse, talk to the server, exit 0 or 1. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  await runTestClient({
    host: parseHost(parsed.values.host, "--host"),
    port: parsePort(parsed.values.port),
    timeout: parseSeconds(parsed.values.timeout, "--timeout"),
  });
  return 0;
}

if (import.meta.main) runMain(main);
