/**
 * Bad input, every script, one way: a table of bad values for every option
 * of every script, each of which must be a usage mistake (exit 2, one line
 * on stderr naming the option, nothing on stdout, no stack trace). The
 * options come from each script's `--help`, so a new option without a row
 * fails the test.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type CommandSpec, usage } from "../_cli.ts";
import { type Output, ROOT, SCRIPT_PERMISSIONS } from "./_helpers.ts";

/** One bad command line and what its one error line must say. */
interface Row {
  /** The arguments after the script's base arguments. */
  args: string[];
  /** What the error line says besides the option's name (the range). */
  says: RegExp;
}

/** Every bad input of one script. */
interface ScriptRows {
  /** Permissions to run it with. */
  perms: string[];
  /**
   * Arguments put before each row's, so that a script that wrongly accepts
   * the row does no harm: a server binds a free port, a client connects to
   * a port nothing listens on. A row's own value comes last and wins.
   */
  base: string[];
  /** Rows by long option name; each option of `--help` needs at least one. */
  options: Record<string, Row[]>;
  /** Rows for positional arguments, named in `says` alone. */
  positionals?: Row[];
}

const PORT_RANGE = /expected 0 to 65535/;
const DURATION_RANGE = /expected (0 for off, or )?0\.001 to 2147483 seconds/;

/** A port: negative (both spellings), too big, not a number. */
function portRows(option: string, range = PORT_RANGE): Row[] {
  return [
    { args: [option, "-1"], says: range },
    { args: [`${option}=-1`], says: range },
    { args: [option, "70000"], says: range },
    { args: [option, "http"], says: range },
  ];
}

/**
 * A duration: negative, longer than a timer holds (2^31 ms), shorter than
 * 1 ms after rounding, not a number.
 */
function durationRows(option: string): Row[] {
  return [
    { args: [option, "-1"], says: DURATION_RANGE },
    { args: [option, "3000000"], says: DURATION_RANGE },
    { args: [option, "0.0001"], says: DURATION_RANGE },
    { args: [option, "soon"], says: DURATION_RANGE },
  ];
}

/** A whole number within `[min, max]`: below, above, not a number. */
function countRows(option: string, min: number, max?: number): Row[] {
  const range = max === undefined
    ? new RegExp(`expected a whole number of at least ${min}`)
    : new RegExp(`expected ${min} to ${max}`);
  return [
    { args: [option, String(min - 1 < 0 ? -1 : min - 1)], says: range },
    ...(min > 0 ? [{ args: [option, "-5"], says: range }] : []),
    ...(max === undefined
      ? []
      : [{ args: [option, String(max + 1)], says: range }]),
    { args: [option, "many"], says: range },
  ];
}

/** A host: empty (both spellings), blank. */
function hostRows(option: string): Row[] {
  const says = /expected a host name or an IP address/;
  return [
    { args: [`${option}=`], says },
    { args: [option, ""], says },
    { args: [option, " "], says },
  ];
}

/** A flag takes no value. */
function flagRows(option: string): Row[] {
  return [{ args: [`${option}=x`], says: /does not take an argument/ }];
}

/**
 * Rows of the endpoint options every client shares (CLIENT_ENDPOINT_OPTIONS
 * of _net.ts): a TLS option without --tls, --cert without --key, --tls with
 * --unix, an empty path or name, a malformed ALPN list. Each is caught
 * before a certificate file is read.
 */
const CLIENT_ENDPOINT_ROWS: Record<string, Row[]> = {
  unix: [
    {
      args: ["--unix="],
      says: /Cannot parse --unix "": expected a socket path/,
    },
    { args: ["--unix", "/tmp/x.sock", "--tls"], says: /do not combine/ },
  ],
  tls: [
    ...flagRows("--tls"),
    { args: ["--tls", "--unix", "/tmp/x.sock"], says: /do not combine/ },
  ],
  ca: [{ args: ["--ca", "ca.pem"], says: /--ca needs --tls/ }],
  "server-name": [
    { args: ["--server-name", "localhost"], says: /needs --tls/ },
    ...hostRows("--server-name").map((row) => ({
      ...row,
      args: ["--tls", ...row.args],
    })),
    {
      args: ["--tls", "--server-name", "x", "--cert", "a", "--key", "b"],
      says: /do not combine/,
    },
  ],
  cert: [
    { args: ["--cert", "a.pem", "--key", "a.key"], says: /--cert needs --tls/ },
    { args: ["--tls", "--cert", "a.pem"], says: /--cert needs --key/ },
  ],
  key: [{ args: ["--tls", "--key", "a.key"], says: /--key needs --cert/ }],
  alpn: [
    { args: ["--alpn", "h2"], says: /--alpn needs --tls/ },
    { args: ["--tls", "--alpn", "h2,,echo"], says: /expected protocol names/ },
  ],
};

/**
 * Rows of the endpoint options every server shares (SERVER_ENDPOINT_OPTIONS
 * of _net.ts): where to listen, TLS without its certificate or key, TLS
 * options without --tls, --tls with --unix, and bad access lists (quoted).
 */
const SERVER_ENDPOINT_ROWS: Record<string, Row[]> = {
  hostname: hostRows("--hostname"),
  port: portRows("--port"),
  unix: [
    {
      args: ["--unix="],
      says: /Cannot parse --unix "": expected a socket path/,
    },
    {
      args: ["--unix", "/tmp/x.sock", "--tls", "--cert", "a", "--key", "b"],
      says: /do not combine/,
    },
  ],
  tls: [
    ...flagRows("--tls"),
    { args: ["--tls"], says: /--tls needs --cert FILE and --key FILE/ },
  ],
  cert: [
    { args: ["--cert", "a.pem", "--key", "a.key"], says: /--cert needs --tls/ },
    { args: ["--tls", "--cert", "a.pem"], says: /--cert needs --key/ },
  ],
  key: [{ args: ["--tls", "--key", "a.key"], says: /--key needs --cert/ }],
  alpn: [
    { args: ["--alpn", "h2"], says: /--alpn needs --tls/ },
    {
      args: ["--tls", "--cert", "a", "--key", "b", "--alpn", "h2,"],
      says: /expected protocol names/,
    },
  ],
  allow: [
    { args: ["--allow", "10.0.0.0/33"], says: /entry "10\.0\.0\.0\/33"/ },
    {
      args: ["--allow", "127.0.0.1,example.com"],
      says: /entry "example\.com"/,
    },
    { args: ["--allow", "::1/129"], says: /entry "::1\/129"/ },
    {
      args: ["--allow", "127.0.0.1", "--unix", "/tmp/x.sock"],
      says: /do not apply to --unix/,
    },
  ],
  deny: [
    { args: ["--deny", "1::2::3"], says: /entry "1::2::3"/ },
    { args: ["--deny", ""], says: /entry ""/ },
  ],
};

/** Rows of the options both echo servers share (servers/_echo.ts). */
const ECHO_ROWS: Record<string, Row[]> = {
  ...SERVER_ENDPOINT_ROWS,
  port: [...portRows("--port"), { args: ["-p", "-1"], says: PORT_RANGE }],
  "max-connections": countRows("--max-connections", 1),
  "idle-timeout": durationRows("--idle-timeout"),
  grace: durationRows("--grace"),
  verbose: flagRows("--verbose"),
};

const SERVER_BASE = ["--port", "0"];

/** The table: every script, every option. */
const TABLE: Record<string, ScriptRows> = {
  "servers/sequential.ts": {
    perms: SCRIPT_PERMISSIONS["servers/sequential.ts"]!,
    base: SERVER_BASE,
    options: {
      ...SERVER_ENDPOINT_ROWS,
      timeout: durationRows("--timeout"),
      deadline: durationRows("--deadline"),
      once: flagRows("--once"),
    },
  },
  "servers/select_echo.ts": {
    perms: SCRIPT_PERMISSIONS["servers/select_echo.ts"]!,
    base: SERVER_BASE,
    options: {
      ...ECHO_ROWS,
      buffer: [
        ...countRows("--buffer", 1, 64 * 1024 * 1024),
        { args: ["-b", "-5"], says: /expected 1 to/ },
      ],
      "max-buffer": [
        ...countRows("--max-buffer", 1024, 64 * 1024 * 1024),
        {
          args: ["--buffer", "4096", "--max-buffer", "2048"],
          says: /expected 4096 to/,
        },
      ],
      threads: [
        ...countRows("--threads", 1, 64),
        {
          args: ["--threads", "2", "--unix", "/tmp/x.sock"],
          says: /--threads and --unix do not combine/,
        },
      ],
    },
  },
  "servers/completion_echo.ts": {
    perms: SCRIPT_PERMISSIONS["servers/completion_echo.ts"]!,
    base: SERVER_BASE,
    options: {
      ...ECHO_ROWS,
      workers: countRows("--workers", 1, 1024),
      threads: [
        ...countRows("--threads", 1, 64),
        {
          args: ["--threads", "2", "--unix", "/tmp/x.sock"],
          says: /--threads and --unix do not combine/,
        },
      ],
    },
  },
  "servers/udp_echo.ts": {
    perms: SCRIPT_PERMISSIONS["servers/udp_echo.ts"]!,
    base: SERVER_BASE,
    options: {
      hostname: SERVER_ENDPOINT_ROWS.hostname!,
      port: [...portRows("--port"), { args: ["-p", "-1"], says: PORT_RANGE }],
      // No --tls here: only the --unix rows that do not need it.
      unix: SERVER_ENDPOINT_ROWS.unix!.filter((row) =>
        !row.args.includes("--tls")
      ),
      allow: SERVER_ENDPOINT_ROWS.allow!,
      deny: SERVER_ENDPOINT_ROWS.deny!,
      "rate-limit": countRows("--rate-limit", 0, 1_000_000),
    },
  },
  "clients/client.ts": {
    perms: SCRIPT_PERMISSIONS["clients/client.ts"]!,
    base: ["--port", "1"],
    options: {
      host: hostRows("--host"),
      port: portRows("--port"),
      ...CLIENT_ENDPOINT_ROWS,
      timeout: durationRows("--timeout"),
    },
  },
  "tools/hostinfo.ts": {
    perms: SCRIPT_PERMISSIONS["tools/hostinfo.ts"]!,
    base: [],
    options: { json: flagRows("--json") },
    positionals: [
      { args: [""], says: /Cannot parse NAME "": expected a host name/ },
      { args: ["[]"], says: /Cannot parse NAME "\[\]": expected a host name/ },
      { args: ["a", "b"], says: /at most one name or address/ },
    ],
  },
  "tools/netstat.ts": {
    perms: SCRIPT_PERMISSIONS["tools/netstat.ts"]!,
    base: [],
    options: {
      listening: flagRows("--listening"),
      tcp: flagRows("--tcp"),
      udp: flagRows("--udp"),
      port: portRows("--port", /expected 1 to 65535/).concat([
        { args: ["--port", "0"], says: /expected 1 to 65535/ },
      ]),
      pid: countRows("--pid", 1),
      state: [{ args: ["--state", "bogus"], says: /expected one of/ }],
      json: flagRows("--json"),
      source: [{ args: ["--source", "kernel"], says: /expected auto/ }],
      wait: portRows("--wait", /expected 1 to 65535/),
      host: hostRows("--host").map((row) => ({
        ...row,
        args: ["--wait", "1", ...row.args],
      })),
      check: [
        {
          args: ["--check", "[::1]42587"],
          says: /no colon between "\]" and the port/,
        },
        { args: ["--check", "::1:80"], says: /brackets, as \[::1\]:8080/ },
        { args: ["--check", "[]:80"], says: /expected HOST:PORT/ },
        { args: ["--check", "127.0.0.1:0"], says: /1 to 65535/ },
        { args: ["--check", "-1"], says: /expected HOST:PORT/ },
      ],
      timeout: durationRows("--timeout").map((row) => ({
        ...row,
        args: ["--wait", "1", ...row.args],
      })),
    },
  },
  "tools/load.ts": {
    perms: SCRIPT_PERMISSIONS["tools/load.ts"]!,
    base: ["--port", "1", "-q"],
    options: {
      host: hostRows("--host"),
      port: portRows("--port", /expected 1 to 65535/).concat([
        { args: ["--port", "0"], says: /expected 1 to 65535/ },
      ]),
      ...CLIENT_ENDPOINT_ROWS,
      connections: [
        ...countRows("--connections", 0, 65535),
        { args: ["-c", "-1"], says: /expected 0 to 65535/ },
        { args: ["-c", "99999999"], says: /expected 0 to 65535/ },
        {
          args: ["-c", "40000", "--idle", "40000"],
          says: /at most 65535 connections in all/,
        },
        // --udp: each flow is a socket.
        { args: ["--udp", "-c", "0"], says: /expected 1 to 10000/ },
        { args: ["--udp", "-c", "10001"], says: /expected 1 to 10000/ },
      ],
      size: [
        ...countRows("--size", 1, 16 * 1024 * 1024),
        // --udp: a datagram holds the 24-byte header, at most 65,507 bytes.
        { args: ["--udp", "-s", "23"], says: /expected 24 to 65507/ },
        { args: ["--udp", "-s", "65508"], says: /expected 24 to 65507/ },
      ],
      mode: [{
        args: ["--mode", "burst"],
        says: /expected pingpong or stream/,
      }],
      duration: [
        ...durationRows("--duration"),
        { args: ["-d", "3000000"], says: DURATION_RANGE },
        { args: ["-d", "0.0001"], says: DURATION_RANGE },
      ],
      rate: [
        { args: ["--rate", "-5"], says: /expected 0\.001 to 1000000/ },
        { args: ["--rate", "0"], says: /expected 0\.001 to 1000000/ },
        { args: ["--rate", "1e9"], says: /expected 0\.001 to 1000000/ },
        { args: ["--rate", "fast"], says: /expected 0\.001 to 1000000/ },
        // Capacity search: @ and a p99 target in ms.
        { args: ["--rate", "@0"], says: /expected @P99MS/ },
        { args: ["--rate", "@fast"], says: /expected @P99MS/ },
        { args: ["--rate", "@"], says: /expected @P99MS/ },
        { args: ["--rate", "@5", "--interval", "1"], says: /do not combine/ },
        {
          args: ["--rate", "@5", "-c", "0", "--idle", "1"],
          says: /needs connections/,
        },
        { args: ["--udp", "--rate", "@5"], says: /do not combine/ },
        // --udp: 0 floods.
        {
          args: ["--udp", "--rate", "-1"],
          says: /expected 0 \(flood\) or 0\.001 to 1000000/,
        },
        {
          args: ["--udp", "--rate", "2000000"],
          says: /expected 0 \(flood\) or 0\.001 to 1000000/,
        },
      ],
      percentiles: [
        {
          args: ["--percentiles", "0"],
          says: /expected numbers above 0 up to 100/,
        },
        {
          args: ["--percentiles", "101"],
          says: /expected numbers above 0 up to 100/,
        },
        {
          args: ["--percentiles", "50,,99"],
          says: /expected numbers above 0 up to 100/,
        },
        {
          args: ["--percentiles", "p99"],
          says: /expected numbers above 0 up to 100/,
        },
      ],
      message: [
        { args: ["--message", ""], says: /expected 1 to 16777216 bytes/ },
        { args: ["--message", "a\\q"], says: /expected \\n, \\r/ },
        { args: ["--message", "a\\x4"], says: /expected \\n, \\r/ },
        { args: ["--message", "hi", "-s", "10"], says: /do not combine/ },
        {
          args: ["--message", "hi", "--message-file", "m"],
          says: /do not combine/,
        },
        { args: ["--udp", "--message", "hi"], says: /do not combine/ },
      ],
      "message-file": [
        { args: ["--message-file", ""], says: /expected a file name/ },
        { args: ["--message-file", "m", "-s", "10"], says: /do not combine/ },
        { args: ["--udp", "--message-file", "m"], says: /do not combine/ },
      ],
      ramp: countRows("--ramp", 1, 65535),
      "connect-rate": [
        { args: ["--connect-rate", "-5"], says: /expected 0\.001 to 1000000/ },
        { args: ["--connect-rate", "0"], says: /expected 0\.001 to 1000000/ },
        { args: ["--connect-rate", "1e9"], says: /expected 0\.001 to 1000000/ },
        { args: ["--connect-rate", "x"], says: /expected 0\.001 to 1000000/ },
      ],
      window: [
        ...countRows("--window", 1, 64 * 1024 * 1024),
        { args: ["--window", "999999999999"], says: /expected 1 to 67108864/ },
        {
          args: ["--mode", "stream", "-s", "1", "-c", "4000"],
          says: /--window "262144" .* would take 8\.1 GiB, at most 4\.0 GiB/,
        },
      ],
      engine: [
        { args: ["--engine", "epoll"], says: /expected auto, net or deno/ },
      ],
      idle: countRows("--idle", 0, 65535),
      "connect-timeout": durationRows("--connect-timeout"),
      "drain-timeout": durationRows("--drain-timeout"),
      json: flagRows("--json"),
      interval: [
        ...durationRows("--interval"),
        {
          args: ["--interval", "0.05"],
          says: /expected at least 0\.1 seconds/,
        },
      ],
      "json-stream": [
        ...flagRows("--json-stream"),
        { args: ["--json-stream", "--json"], says: /do not combine/ },
      ],
      quiet: flagRows("--quiet"),
      "allow-errors": flagRows("--allow-errors"),
      "histogram-log": [
        { args: ["--histogram-log", ""], says: /expected a file name/ },
        {
          args: ["--histogram-log", "run.out", "--svg", "run.out"],
          says: /would write the same file/,
        },
        {
          args: ["--rate", "@5", "--histogram-log", "run.hlog"],
          says: /do not combine/,
        },
      ],
      svg: [{ args: ["--svg", ""], says: /expected a file name/ }],
      udp: [
        ...flagRows("--udp"),
        { args: ["--udp", "--tls"], says: /DTLS is not supported/ },
        { args: ["--udp", "--unix", "/tmp/x.sock"], says: /do not combine/ },
        { args: ["--udp", "--mode", "stream"], says: /do not combine/ },
        { args: ["--udp", "--idle", "3"], says: /do not combine/ },
      ],
      count: [
        { args: ["--count", "10"], says: /--count needs --udp/ },
        ...countRows("--count", 1, 1_000_000_000).map((row) => ({
          ...row,
          args: ["--udp", ...row.args],
        })),
      ],
      "loss-timeout": [
        { args: ["--loss-timeout", "2"], says: /--loss-timeout needs --udp/ },
        ...durationRows("--loss-timeout").map((row) => ({
          ...row,
          args: ["--udp", ...row.args],
        })),
      ],
      "max-loss": [
        { args: ["--max-loss", "5"], says: /--max-loss needs --udp/ },
        ...["-1", "101", "lots"].map((value) => ({
          args: ["--udp", "--max-loss", value],
          says: /expected 0 to 100 percent/,
        })),
      ],
    },
  },
  "tools/proxy.ts": {
    perms: SCRIPT_PERMISSIONS["tools/proxy.ts"]!,
    base: [...SERVER_BASE, "--upstream", "127.0.0.1:1"],
    options: {
      ...SERVER_ENDPOINT_ROWS,
      port: [...portRows("--port"), { args: ["-p", "-1"], says: PORT_RANGE }],
      upstream: [
        { args: ["--upstream", "127.0.0.1"], says: /expected HOST:PORT/ },
        { args: ["--upstream", ":80"], says: /expected HOST:PORT/ },
        { args: ["--upstream", "::1:80"], says: /in brackets/ },
        { args: ["--upstream", "[::1]80"], says: /no colon between/ },
        { args: ["--upstream", "127.0.0.1:0"], says: /1 to 65535/ },
        { args: ["--upstream", "127.0.0.1:70000"], says: /1 to 65535/ },
        { args: ["--upstream=-1"], says: /expected HOST:PORT/ },
      ],
      "upstream-unix": [
        { args: ["--upstream-unix="], says: /expected a socket path/ },
        { args: ["--upstream-unix", "/tmp/x.sock"], says: /do not combine/ },
      ],
      "upstream-tls": [
        ...flagRows("--upstream-tls"),
        {
          args: ["--upstream-tls", "--upstream-unix", "/tmp/x.sock"],
          says: /do not combine/,
        },
      ],
      "upstream-ca": [
        { args: ["--upstream-ca", "ca.pem"], says: /needs --upstream-tls/ },
      ],
      "upstream-server-name": [
        {
          args: ["--upstream-server-name", "localhost"],
          says: /needs --upstream-tls/,
        },
        ...hostRows("--upstream-server-name").map((row) => ({
          ...row,
          args: ["--upstream-tls", ...row.args],
        })),
      ],
      "connect-timeout": durationRows("--connect-timeout"),
      toxic: [
        { args: ["--toxic", "nosuch:rate=10"], says: /Unknown toxic type/ },
        { args: ["--toxic", "bandwidth:rate=-1"], says: /whole number/ },
        { args: ["--toxic", "slicer:delay=x"], says: /whole number/ },
        { args: ["--toxic", "hang:timeout=5"], says: /Unknown attribute/ },
        { args: ["--toxic", "reset_peer:delay=5"], says: /expected timeout/ },
        { args: ["--toxic", "latency:delay=5"], says: /Unknown attribute/ },
        { args: ["--toxic", "latency:latency=-5"], says: /whole number/ },
        { args: ["--toxic", "latency:latency=1.5"], says: /whole number/ },
        { args: ["--toxic", "latency:latency"], says: /expected KEY=VALUE/ },
        { args: ["--toxic", "latency:stream=up"], says: /upstream or down/ },
        { args: ["--toxic", "latency:toxicity=2"], says: /expected 0 to 1/ },
        { args: ["--toxic", "limit_data:toxicity=x"], says: /0 to 1/ },
      ],
      seed: countRows("--seed", 0, 2 ** 32 - 1),
      api: [
        { args: ["--api", "127.0.0.1"], says: /expected HOST:PORT/ },
        { args: ["--api", "::1:8474"], says: /in brackets/ },
        { args: ["--api", "127.0.0.1:70000"], says: /1 to 65535/ },
        { args: ["--api="], says: /expected HOST:PORT/ },
      ],
    },
  },
  "tools/compile.ts": {
    perms: SCRIPT_PERMISSIONS["tools/compile.ts"]!,
    base: [],
    options: {
      out: [
        { args: ["--out"], says: /argument missing/ },
        { args: ["--out", "--json"], says: /needs a value before "--json"/ },
      ],
    },
    positionals: [{ args: ["nothing"], says: /Unknown target "nothing"/ }],
  },
  "demo.ts": {
    perms: ["--allow-net=127.0.0.1"],
    base: [],
    options: {},
    positionals: [{ args: ["now"], says: /Unexpected argument 'now'/ }],
  },
};

/**
 * The options a `--help` text lists (as {@linkcode usage} renders them),
 * `--help` itself left out: long name, one-letter alias, whether it takes a
 * value.
 */
export function optionsOfHelp(
  help: string,
): { long: string; short?: string; takesValue: boolean }[] {
  const lines = help.split("\n");
  const start = lines.indexOf("Options:");
  assert.ok(start >= 0, `no "Options:" line in:\n${help}`);
  const found = [];
  for (const line of lines.slice(start + 1)) {
    if (line === "") break;
    const match = /^ {2}(?:-(\w), | {4})--([a-z][\w-]*)( \S+)? {2}/.exec(line);
    assert.ok(match, `cannot read option line ${JSON.stringify(line)}`);
    if (match[2] === "help") continue;
    found.push({
      long: match[2]!,
      ...(match[1] ? { short: match[1] } : {}),
      takesValue: match[3] !== undefined,
    });
  }
  return found;
}

/** Runs `deno run` on `script`, killing it after `ms` (a wrongly accepted row). */
async function runBounded(
  script: string,
  args: string[],
  perms: string[],
  ms = 5_000,
): Promise<Output & { killed: boolean }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...perms, script, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, ms);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
      killed,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Maps `items` through `fn`, at most `limit` at once, keeping the order. */
async function mapBounded<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  }
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

/** Each `deno run` is mostly start-up: a few per core keep both cores busy. */
const CONCURRENCY = 4;

Deno.test("optionsOfHelp reads back every option usage() renders", () => {
  const spec: CommandSpec = {
    name: "x.ts",
    summary: "A script.",
    options: {
      port: { type: "string", short: "p", arg: "PORT", description: "P." },
      "max-connections": { type: "string", description: "M.", default: "1" },
      check: { type: "string", arg: "HOST:PORT", description: "C." },
      once: { type: "boolean", description: "O." },
      verbose: { type: "boolean", short: "v", description: "V." },
    },
  };
  assert.deepEqual(optionsOfHelp(usage(spec)), [
    { long: "port", short: "p", takesValue: true },
    { long: "max-connections", takesValue: true },
    { long: "check", takesValue: true },
    { long: "once", takesValue: false },
    { long: "verbose", short: "v", takesValue: false },
  ]);
});

Deno.test("bad input: the table has every script", () => {
  const scripts = ["demo.ts"];
  for (const dir of ["servers", "clients", "tools"]) {
    for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
      if (entry.isFile && /^[^_].*\.ts$/.test(entry.name)) {
        scripts.push(`${dir}/${entry.name}`);
      }
    }
  }
  assert.deepEqual(Object.keys(TABLE).sort(), scripts.sort());
});

Deno.test("bad input: every option of every script --help lists has a row", async () => {
  const scripts = Object.keys(TABLE);
  const helps = await mapBounded(
    scripts,
    CONCURRENCY,
    (script) => runBounded(script, ["--help"], TABLE[script]!.perms),
  );
  scripts.forEach((script, i) => {
    const help = helps[i]!;
    assert.equal(help.code, 0, `${script} --help: ${help.stderr}`);
    const listed = optionsOfHelp(help.stdout).map((o) => o.long).sort();
    const rows = Object.keys(TABLE[script]!.options).sort();
    assert.deepEqual(
      listed,
      rows,
      `${script}: --help lists [${listed}], the table has rows for [${rows}]`,
    );
    for (const [long, list] of Object.entries(TABLE[script]!.options)) {
      assert.ok(list.length > 0, `${script} --${long}: no row`);
    }
  });
});

Deno.test("bad input: every row is a usage mistake, one line naming the option, exit 2", async (t) => {
  const cases: {
    script: string;
    name: string;
    args: string[];
    says: RegExp;
  }[] = [];
  for (const [script, rows] of Object.entries(TABLE)) {
    cases.push({
      script,
      name: "--no-such-option",
      args: [...rows.base, "--no-such-option"],
      says: /Unknown option '--no-such-option'/,
    });
    for (const [long, list] of Object.entries(rows.options)) {
      for (const row of list) {
        cases.push({
          script,
          name: `--${long}`,
          args: [...rows.base, ...row.args],
          says: row.says,
        });
      }
    }
    for (const row of rows.positionals ?? []) {
      cases.push({
        script,
        name: "",
        args: [...rows.base, ...row.args],
        says: row.says,
      });
    }
  }
  const started = performance.now();
  const outputs = await mapBounded(
    cases,
    CONCURRENCY,
    (c) => runBounded(c.script, c.args, TABLE[c.script]!.perms),
  );
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`${cases.length} command lines in ${seconds} s`);
  for (const [i, c] of cases.entries()) {
    const out = outputs[i]!;
    const shown = c.args.map((a) => a === "" ? '""' : a).join(" ");
    await t.step(`${c.script} ${shown}`, () => {
      const what = `${c.script} ${shown}: exit ${out.code}${
        out.killed ? " (killed: still running)" : ""
      }, stderr ${JSON.stringify(out.stderr)}`;
      assert.equal(out.code, 2, what);
      assert.match(out.stderr, /^error: [^\n]+\n$/, what);
      assert.doesNotMatch(out.stderr, /^\s+at /m, what);
      assert.ok(
        out.stderr.includes(c.name),
        `${what}: does not name ${c.name}`,
      );
      assert.match(out.stderr, c.says, what);
      assert.equal(out.stdout, "", what);
    });
  }
});
