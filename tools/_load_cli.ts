/**
 * The load generator's command line: its options and help text
 * ({@linkcode SPEC}), and how they are checked and turned into what a run
 * takes, for the TCP, TLS and Unix modes ({@linkcode parseLoadCommand})
 * and for `--udp` ({@linkcode parseUdpCommand}). Usage mistakes throw
 * {@linkcode UsageError} (exit 2). Private to `tools/load.ts`, whose
 * `main` runs what these return.
 *
 * @module
 */

import {
  type CommandSpec,
  fileError,
  type ParsedArgs,
  parseHost,
  parseInteger,
  parseSeconds,
  UsageError,
} from "../_cli.ts";
import {
  CLIENT_ENDPOINT_OPTIONS,
  parseClientEndpoint,
  TLS_LIMITS_HELP,
} from "../_net_options.ts";
import { checkOpenFiles } from "./_load_nofile.ts";
import { parsePercentiles } from "./_report.ts";
import { OUTPUT_OPTIONS } from "./_hdr_outputs.ts";
import { decodeMessage } from "./_load_pattern.ts";
import type { LoadOptions } from "./_load_run.ts";
import { flowBytes, type LoadMode } from "./_load_flow.ts";
import {
  DEFAULT_UDP_RATE,
  MAX_FLOWS,
  type UdpLoadOptions,
} from "./_udp_load.ts";
import { MAX_DATAGRAM, UDP_HEADER } from "./_udp_datagram.ts";
import type { Printing } from "./_load_print.ts";

/** Option values by long name, as the command line parsed them. */
type Values = ParsedArgs["values"];

/**
 * Most connections one run opens, with and without traffic: each
 * connection to one HOST:PORT takes a local port of its own, and a host has
 * 65535 ports (Linux lends 28,232 by default, `ip_local_port_range`).
 */
const MAX_CONNECTIONS = 65_535;

/**
 * Largest `--window`: about three times what the four socket buffers on an
 * echo's path hold at Linux's default maxima (4-6 MiB each, `tcp_wmem`,
 * `tcp_rmem`); bytes in flight beyond them only wait in this process.
 */
const MAX_WINDOW = 64 * 1024 * 1024;

/**
 * Most the connections' buffers may take: more fails as "Array buffer
 * allocation failed" or wakes the OOM killer. The bench's largest run (1,000
 * connections, 16 KiB stream writes) takes 70 MB.
 */
const MAX_FLOW_BYTES = 4 * 1024 ** 3;

/** The command line of `tools/load.ts`: its options and help text. */
export const SPEC: CommandSpec = {
  name: "tools/load.ts",
  summary:
    "Drive an echo server with many connections and check every byte that comes back.",
  options: {
    ...CLIENT_ENDPOINT_OPTIONS,
    connections: {
      type: "string",
      short: "c",
      default: "50",
      arg: "N",
      description: "Connections carrying traffic.",
    },
    size: {
      type: "string",
      short: "s",
      default: "64",
      arg: "BYTES",
      description: "Message size (pingpong) or write size (stream).",
    },
    mode: {
      type: "string",
      default: "pingpong",
      arg: "MODE",
      description:
        "pingpong: send, wait for the whole echo, repeat; stream: keep a window in flight.",
    },
    duration: {
      type: "string",
      short: "d",
      default: "5",
      arg: "SECONDS",
      description: "How long traffic runs once the connections are up.",
    },
    rate: {
      type: "string",
      arg: "MSGS_PER_S",
      description:
        "Messages per second per connection, open loop (latency counts from when each was due). @P99MS: capacity search, the highest total rate whose p99 stays under P99MS ms (a closed-loop probe, then at most 12 steps of -d each, doubling, then bisecting to 5%).",
    },
    percentiles: {
      type: "string",
      default: "50,90,99,99.9",
      arg: "LIST",
      description: "Latency percentiles the report lists (as tcpkali).",
    },
    message: {
      type: "string",
      arg: "TEXT",
      description:
        "Send TEXT as every message (escapes \\n \\r \\t \\0 \\\\ \\xHH), checked byte for byte; its length is the size.",
    },
    "message-file": {
      type: "string",
      arg: "FILE",
      description:
        "Send the bytes of FILE as every message (needs --allow-read=FILE), checked byte for byte.",
    },
    ramp: {
      type: "string",
      default: "100",
      arg: "N",
      description: "Connects in flight at once while opening connections.",
    },
    "connect-rate": {
      type: "string",
      arg: "N",
      description:
        "Open connections at N per second (as tcpkali), at most --ramp in flight; default as fast as they come.",
    },
    window: {
      type: "string",
      default: "262144",
      arg: "BYTES",
      description: "Stream mode: most bytes in flight per connection.",
    },
    engine: {
      type: "string",
      default: "auto",
      arg: "ENGINE",
      description:
        "deno: Deno.Conn, faster, unfair past ~128 busy connections; net: node:net (node:tls), fair; auto: deno up to 128 connections, net above.",
    },
    idle: {
      type: "string",
      default: "0",
      arg: "N",
      description: "Extra connections held open without traffic.",
    },
    "connect-timeout": {
      type: "string",
      default: "5",
      arg: "SECONDS",
      description:
        "Give up on a connect (with its TLS handshake) after this long.",
    },
    "drain-timeout": {
      type: "string",
      default: "5",
      arg: "SECONDS",
      description: "After the run, time allowed for outstanding echoes.",
    },
    json: {
      type: "boolean",
      description:
        "Print the report as one JSON object (with every interval's figures).",
    },
    interval: {
      type: "string",
      arg: "SECONDS",
      description:
        "Print each interval's own msg/s, MB/s, p50, p99, connections up and errors, as iperf3 does (default interval 1 s, at least 0.1).",
    },
    "json-stream": {
      type: "boolean",
      description:
        'One JSON object a line on stdout: {"event":"interval","data":...} per interval, then {"event":"end","data":REPORT}.',
    },
    quiet: {
      type: "boolean",
      short: "q",
      description: "No progress lines while running.",
    },
    "allow-errors": {
      type: "boolean",
      description:
        "Exit 0 even if bytes mismatched or connections failed (--udp: datagrams came back corrupted).",
    },
    udp: {
      type: "boolean",
      description:
        "UDP echo: each of -c flows sends sequence-numbered datagrams of -s bytes (24 to 65507, header included) at --rate and checks each one back.",
    },
    count: {
      type: "string",
      arg: "N",
      description:
        "--udp: send at most N datagrams a flow (the run still ends at --duration).",
    },
    "loss-timeout": {
      type: "string",
      default: "1",
      arg: "SECONDS",
      description:
        "--udp: a datagram not back intact this long after it was sent is lost (one back later is late).",
    },
    "max-loss": {
      type: "string",
      arg: "PERCENT",
      description:
        "--udp: exit 1 when more than PERCENT of the datagrams are lost; default loss is only reported.",
    },
    ...OUTPUT_OPTIONS,
  },
  epilog: `Exit status: 0 when every connection came up and every byte came back
intact, 1 otherwise (or with --allow-errors, only when nothing could connect),
130 when interrupted, 2 on a usage mistake. Progress goes to stderr, an
interval's own figures (one live line on a terminal, a line an interval
otherwise; none with --interval, whose lines go to stdout). The run ends at
--duration, or early, with a line saying so, when every connection is gone.
Ctrl-C (or SIGTERM, SIGHUP) ends the run early and still reports, marked
interrupted; a second one stops at once.

--udp: every flow is a socket sending at --rate datagrams a second (default
${DEFAULT_UDP_RATE}: 1 ms apart, what a millisecond timer keeps; with no pacing UDP
load measures how fast socket buffers overflow); --rate 0 floods, and the report
says so. Counted: sent, received, lost (not back intact within --loss-timeout;
lost_packets, lost_percent as iperf3), late, duplicated, reordered
(out_of_order), corrupted; RTT percentiles and RFC 3550 jitter (jitter_ms).
Loss is reported, not an error, unless above --max-loss; exit 1 also when
nothing came back or something came back corrupted.

Latencies are kept in HdrHistogram's standard form: the --json report carries
it (latency.histogram), and \`tools/load.ts merge REPORT...\` merges the reports
(or --histogram-log logs) of runs on several machines against one server into
one: counts summed, percentiles of the merged histogram (merge --help).

Open files: every connection (every --udp flow) is one. Deno raises its soft
limit to the hard one as it starts; a run past the hard limit stops with one
line saying how to raise it (with --allow-run=prlimit, before it connects).

The connect phase (TCP connect, plus the TLS handshake with --tls) has its own
percentiles and connects/s in the report: with --tls -c 0 --idle N, connects/s
is handshakes per second; --connect-rate paces them.
${TLS_LIMITS_HELP}

Examples:
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 1000 -d 10
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 --mode stream -s 16384 -c 10
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 50 --rate 1000 --json
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 50 -d 10 --interval 1
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 50 -d 5 --rate @5
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 --message 'PING\\r\\n'
  deno run --allow-net=localhost --allow-read=ca.pem tools/load.ts --host localhost -p 39304 --tls --ca ca.pem
  deno run --allow-net=127.0.0.1 --allow-read=ca.pem tools/load.ts -p 39304 --tls --ca ca.pem -c 0 --idle 2000 --connect-rate 500
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 --udp -c 10 --rate 500 --max-loss 1
  deno run --allow-net=unix:/tmp/echo.sock --allow-read=/tmp/echo.sock --allow-write=/tmp/echo.sock tools/load.ts --unix /tmp/echo.sock`,
};

/**
 * Parses a rate option (`--rate`, `--connect-rate`): 0 when not given, else
 * 0.001 to 1,000,000 per second, at least one per 1000 s (a due time a timer
 * holds), at most one per microsecond.
 *
 * @throws {UsageError} Naming the option and the range.
 */
function parseRate(
  value: unknown,
  name: string,
  what: string,
  zero?: string,
): number {
  if (value === undefined) return 0;
  const text = String(value);
  const rate = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
  if (zero !== undefined && rate === 0) return 0;
  if (!(rate >= 0.001 && rate <= 1_000_000)) {
    throw new UsageError(
      `Cannot parse ${name} "${text}": expected ${
        zero === undefined ? "" : `0 (${zero}) or `
      }0.001 to 1000000 ${what} per second`,
    );
  }
  return rate;
}

/** The TCP options that mean nothing over UDP, with their defaults. */
const TCP_ONLY: Record<string, string | undefined> = {
  tls: undefined,
  unix: undefined,
  mode: "pingpong",
  window: "262144",
  engine: "auto",
  idle: "0",
  ramp: "100",
  "connect-rate": undefined,
  "connect-timeout": "5",
  "drain-timeout": "5",
  message: undefined,
  "message-file": undefined,
};

/** A `--udp` run as its command line asks for it. */
export interface UdpCommand {
  /** What to run, without the callbacks. */
  options: UdpLoadOptions;
  /** Milliseconds of one interval. */
  interval: number;
  /** What is printed. */
  print: Printing;
}

/**
 * Checks the options of `--udp` and that the open-files limit holds its
 * flows.
 *
 * @throws {UsageError} On an option out of range, or one of the TCP modes.
 * @throws {CliError} When the open-files limit is too low.
 */
export async function parseUdpCommand(v: Values): Promise<UdpCommand> {
  for (const [name, byDefault] of Object.entries(TCP_ONLY)) {
    const value = v[name];
    if (value !== undefined && value !== false && String(value) !== byDefault) {
      throw new UsageError(
        `--${name} and --udp do not combine: ${
          name === "tls"
            ? "DTLS is not supported"
            : name === "unix"
            ? "datagrams go to a HOST:PORT"
            : "it is an option of the TCP modes"
        }`,
      );
    }
  }
  const hostname = parseHost(v.host, "--host");
  const port = parseInteger(v.port, "--port", 1, 65535);
  const flows = parseInteger(v.connections, "--connections", 1, MAX_FLOWS);
  const size = parseInteger(v.size, "--size", UDP_HEADER, MAX_DATAGRAM);
  if (String(v.rate ?? "").startsWith("@")) {
    throw new UsageError(
      "--rate @P99MS and --udp do not combine: capacity search is for the TCP modes",
    );
  }
  const rate = v.rate === undefined
    ? DEFAULT_UDP_RATE
    : parseRate(v.rate, "--rate", "datagrams", "flood");
  const percentiles = parsePercentileOption(v.percentiles);
  const count = v.count === undefined
    ? 0
    : parseInteger(v.count, "--count", 1, 1_000_000_000);
  const duration = parseSeconds(v.duration, "--duration");
  const lossTimeout = parseSeconds(v["loss-timeout"], "--loss-timeout");
  let maxLoss: number | undefined;
  if (v["max-loss"] !== undefined) {
    const text = String(v["max-loss"]);
    maxLoss = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
    if (!(maxLoss >= 0 && maxLoss <= 100)) {
      throw new UsageError(
        `Cannot parse --max-loss "${text}": expected 0 to 100 percent`,
      );
    }
  }
  const { interval, print } = parseReporting(v);
  await checkOpenFiles(`-c ${flows} flows`, flows);
  return {
    options: {
      hostname,
      port,
      flows,
      size,
      rate,
      count,
      duration,
      lossTimeout,
      maxLoss,
      percentiles,
    },
    interval,
    print,
  };
}

/** A TCP, TLS or Unix run as its command line asks for it. */
export interface LoadCommand {
  /** What to run, without the signal and the callbacks. */
  options: LoadOptions;
  /** Connections in all, with and without traffic. */
  total: number;
  /** `--rate`: messages per second per connection, 0 for closed loop. */
  rate: number;
  /** The p99 target of `--rate @P99MS`, ms, or undefined. */
  targetP99: number | undefined;
  /** Milliseconds of one interval. */
  interval: number;
  /** What is printed. */
  print: Printing;
}

/**
 * Checks the options of a TCP, TLS or Unix run, reads its certificates
 * and `--message-file`, and checks that the open-files limit holds its
 * connections.
 *
 * @throws {UsageError} On an option out of range or one that needs `--udp`.
 * @throws {CliError} When a file cannot be read or the open-files limit is
 * too low.
 */
export async function parseLoadCommand(v: Values): Promise<LoadCommand> {
  for (const name of ["count", "max-loss"]) {
    if (v[name] !== undefined) throw new UsageError(`--${name} needs --udp`);
  }
  if (v["loss-timeout"] !== "1") {
    throw new UsageError("--loss-timeout needs --udp");
  }
  const mode = String(v.mode);
  if (mode !== "pingpong" && mode !== "stream") {
    throw new UsageError(
      `Cannot parse --mode "${mode}": expected pingpong or stream`,
    );
  }
  const engine = String(v.engine);
  if (engine !== "auto" && engine !== "net" && engine !== "deno") {
    throw new UsageError(
      `Cannot parse --engine "${engine}": expected auto, net or deno`,
    );
  }
  // A port to connect to: 0 is a usage mistake here, as in --check.
  if (v.unix === undefined) parseInteger(v.port, "--port", 1, 65535);
  const connections = parseInteger(
    v.connections,
    "--connections",
    0,
    MAX_CONNECTIONS,
  );
  const idle = parseInteger(v.idle, "--idle", 0, MAX_CONNECTIONS);
  if (connections + idle === 0) {
    throw new UsageError(
      'Cannot use --connections "0" without --idle: open at least one connection',
    );
  }
  if (connections + idle > MAX_CONNECTIONS) {
    throw new UsageError(
      `Cannot use --connections "${connections}" with --idle "${idle}": ` +
        `at most ${MAX_CONNECTIONS} connections in all (each takes a local port)`,
    );
  }
  const messageText = parseMessageOption(v);
  const size = messageText?.length ??
    parseInteger(v.size, "--size", 1, MAX_SIZE);
  const window = parseInteger(v.window, "--window", 1, MAX_WINDOW);
  checkFlowBytes({ mode, size, window, connections, idle });
  const targetP99 = parseCapacityTarget(v);
  const rate = targetP99 === undefined
    ? parseRate(v.rate, "--rate", "messages")
    : 0;
  if (targetP99 !== undefined && connections === 0) {
    throw new UsageError(
      "--rate @P99MS needs connections that carry traffic: not with --connections 0",
    );
  }
  const percentiles = parsePercentileOption(v.percentiles);
  const connectRate = parseRate(
    v["connect-rate"],
    "--connect-rate",
    "connections",
  );
  const duration = parseSeconds(v.duration, "--duration");
  const ramp = parseInteger(v.ramp, "--ramp", 1, MAX_CONNECTIONS);
  const connectTimeout = parseSeconds(
    v["connect-timeout"],
    "--connect-timeout",
  );
  const drainTimeout = parseSeconds(v["drain-timeout"], "--drain-timeout");
  const { interval, print } = parseReporting(v);
  // Last: it reads the certificate files, a failure that is not a usage
  // mistake.
  const endpoint = await parseClientEndpoint(v);
  await checkOpenFiles(
    `-c ${connections}${idle > 0 ? ` + --idle ${idle}` : ""}`,
    connections + idle,
  );
  const message = messageText ?? await readMessageFile(v["message-file"]);
  if (message !== undefined && message !== messageText) {
    checkFlowBytes({ mode, size: message.length, window, connections, idle });
  }
  const options: LoadOptions = {
    ...(endpoint.transport === "unix" ? { unix: endpoint.path } : {
      hostname: endpoint.hostname,
      port: endpoint.port,
      ...(endpoint.transport === "tls" ? { tls: endpoint.tls } : {}),
    }),
    connections,
    idle,
    size,
    mode,
    engine,
    duration,
    ramp,
    connectRate,
    window,
    connectTimeout,
    drainTimeout,
    percentiles,
    ...(message === undefined ? {} : { message }),
  };
  return {
    options,
    total: connections + idle,
    rate,
    targetP99,
    interval,
    print,
  };
}

/**
 * Refuses a run whose connections' buffers would take more than
 * {@linkcode MAX_FLOW_BYTES}.
 *
 * @throws {UsageError} Saying what they would take.
 */
function checkFlowBytes(
  o: {
    mode: LoadMode;
    size: number;
    window: number;
    connections: number;
    idle: number;
  },
): void {
  const bytes = flowBytes(o);
  if (bytes <= MAX_FLOW_BYTES) return;
  const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;
  const what = o.mode === "stream"
    ? `--window "${o.window}" with --size "${o.size}" and`
    : `--size "${o.size}" with`;
  throw new UsageError(
    `Cannot use ${what} ${o.connections + o.idle} connections: their buffers ` +
      `would take ${gib(bytes)}, at most ${gib(MAX_FLOW_BYTES)}`,
  );
}

/** Largest message: `--size`, `--message`, `--message-file`. */
const MAX_SIZE = 16 * 1024 * 1024;

/**
 * `--message TEXT` as bytes, or undefined without it; refuses it beside
 * `--message-file` or a `--size` of another length.
 *
 * @throws {UsageError} On those, an empty message or a bad escape.
 */
function parseMessageOption(
  v: Values,
): Uint8Array | undefined {
  const text = v.message;
  const file = v["message-file"];
  if (text !== undefined && file !== undefined) {
    throw new UsageError(
      "--message and --message-file do not combine: give the payload one way",
    );
  }
  if (text === undefined && file === undefined) return undefined;
  if (String(v.size) !== "64") {
    throw new UsageError(
      `--size and --${
        text === undefined ? "message-file" : "message"
      } do not combine: the message's length is the size`,
    );
  }
  if (file !== undefined) {
    if (String(file) === "") {
      throw new UsageError(
        'Cannot use --message-file "": expected a file name',
      );
    }
    return undefined;
  }
  let bytes: Uint8Array;
  try {
    bytes = decodeMessage(String(text));
  } catch (error) {
    throw new UsageError(`--message: ${(error as Error).message}`);
  }
  if (bytes.length === 0 || bytes.length > MAX_SIZE) {
    throw new UsageError(
      `Cannot use --message "${text}": expected 1 to ${MAX_SIZE} bytes`,
    );
  }
  return bytes;
}

/**
 * The bytes of `--message-file FILE`, or undefined without it. Reading is
 * a runtime failure (exit 1), saying which permission is missing; an empty
 * or too large file is a usage mistake.
 *
 * @throws {CliError} When the file cannot be read.
 * @throws {UsageError} When it is empty or larger than 16 MiB.
 */
async function readMessageFile(
  file: unknown,
): Promise<Uint8Array | undefined> {
  if (file === undefined) return undefined;
  const path = String(file);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw fileError("read", "--message-file", path, error);
  }
  if (bytes.length === 0 || bytes.length > MAX_SIZE) {
    throw new UsageError(
      `Cannot use --message-file ${path}: ${bytes.length} bytes, expected 1 to ${MAX_SIZE}`,
    );
  }
  return bytes;
}

/**
 * `--percentiles LIST` as numbers (the default is in the option spec).
 *
 * @throws {UsageError} On a bad list.
 */
function parsePercentileOption(value: unknown): number[] {
  try {
    return parsePercentiles(String(value));
  } catch (error) {
    throw new UsageError(
      `--percentiles: ${(error as Error).message}`,
    );
  }
}

/**
 * The p99 target of `--rate @P99MS` (capacity search), in ms, or undefined
 * for a plain rate; refuses the options a search does not take.
 *
 * @throws {UsageError} On a bad target or an option that does not combine.
 */
function parseCapacityTarget(
  v: Values,
): number | undefined {
  const text = v.rate === undefined ? "" : String(v.rate);
  if (!text.startsWith("@")) return undefined;
  const body = text.slice(1);
  const ms = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(body) ? Number(body) : NaN;
  if (!(ms >= 0.001 && ms <= 600_000)) {
    throw new UsageError(
      `Cannot parse --rate "${text}": expected @P99MS, a p99 target of 0.001 to 600000 ms, as @5`,
    );
  }
  for (const name of ["interval", "histogram-log"]) {
    if (v[name] !== undefined) {
      throw new UsageError(
        `--${name} and --rate @P99MS do not combine: a capacity search reports steps, not intervals`,
      );
    }
  }
  return ms;
}

/**
 * Reads `--interval`, `--json`, `--json-stream` and `--quiet`: the interval
 * in ms (default 1 s) and what is printed. Text intervals replace the status
 * line; JSON ones (on stdout, for a program) leave it to the human on stderr.
 *
 * @throws {UsageError} On an interval below 0.1 s, or --json with --json-stream.
 */
function parseReporting(
  v: Values,
): { interval: number; print: Printing } {
  const json = v.json === true;
  const stream = v["json-stream"] === true;
  if (json && stream) {
    throw new UsageError(
      "--json and --json-stream do not combine: --json-stream ends with the report as its last line",
    );
  }
  const given = v.interval !== undefined;
  const interval = given ? parseSeconds(v.interval, "--interval") : 1_000;
  if (interval < 100) {
    throw new UsageError(
      `Cannot parse --interval "${v.interval}": expected at least 0.1 seconds`,
    );
  }
  const intervals = stream ? "json" : given && !json ? "text" : "none";
  return {
    interval,
    print: {
      intervals,
      progress: v.quiet !== true && intervals !== "text",
      report: stream ? "json-stream" : json ? "json" : "text",
    },
  };
}
