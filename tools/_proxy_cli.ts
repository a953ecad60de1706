/**
 * The proxy's command line: its options and help text ({@linkcode COMMAND}),
 * and how the upstream and `--api` options are checked. Usage mistakes
 * throw `UsageError` (exit 2). Private to `tools/proxy.ts`, whose `main`
 * runs the proxy.
 *
 * @module
 */

import {
  CliError,
  type CommandSpec,
  NOTES_PORT,
  type OptionSpec,
  parseHost,
  SIGNALS_HELP,
  UsageError,
} from "../_cli.ts";
import type { ConnectEndpoint } from "../_net.ts";
import {
  parseClientEndpoint,
  SERVER_ENDPOINT_OPTIONS,
  TLS_LIMITS_HELP,
} from "../_net_options.ts";
import { parseTarget } from "./netstat.ts";
import { PROXY_BUFFER_SIZE } from "./_proxy_relay.ts";

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

/** The command line of `tools/proxy.ts`: its options and help text. */
export const COMMAND: CommandSpec = {
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
export async function parseUpstream(
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

/** `--api HOST:PORT`, port 0 allowed (a free one, printed). */
export function parseApiAddress(
  text: string,
): { hostname: string; port: number } {
  try {
    return parseTarget(text, "--api", true);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
