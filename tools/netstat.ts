#!/usr/bin/env -S deno run --allow-net --allow-run=netstat
/**
 * The notes' "Usage Detection: netstat -a" as a tool: which TCP and UDP
 * sockets exist (IPv4 and IPv6), in which state, with their queues and the
 * process that owns them; then the two questions that follow: is my server
 * up yet (`--wait PORT`), and can I reach that address (`--check HOST:PORT`).
 *
 * Two sources, and the listing says which it used:
 * - `/proc` (Linux): the kernel's tables `/proc/net/{tcp,tcp6,udp,udp6}`,
 *   each socket's owner found by its inode under `/proc/PID/fd` (a link
 *   `socket:[INODE]`) and named from `/proc/PID/comm`. Deno 2.9.6 lets a
 *   script open anything under `/proc`, `/sys` or `/dev` only when every
 *   permission is granted (`-A`; its `check_special_file`), not with
 *   `--allow-read=/proc`, so this source is used only when that is given.
 * - `netstat`: the platform's own command, parsed: `netstat -anpW` on Linux
 *   (owners as far as the user may see them), `netstat -an` on macOS and
 *   the BSDs (no owners), `netstat -ano` on Windows (pids).
 *
 * Permissions: the listing needs `--allow-run=netstat` (or, on Linux, `-A`
 * to read `/proc` itself); `--wait` and `--check` need `--allow-net` to the
 * hosts they probe.
 *
 * @module
 */

import {
  CliError,
  type CommandSpec,
  EXIT_FAILURE,
  parseCommandLine,
  parseHost,
  parseInteger,
  parseSeconds,
  runMain,
  shutdownSignal,
  UsageError,
} from "../_cli.ts";
import { alignColumns } from "../_format.ts";
import { formatAddr } from "../_net.ts";
import { StatusLine } from "../_status_line.ts";
import { formatSocketTable, listSockets } from "./_netstat_list.ts";
import {
  checkPort,
  parseTarget,
  type Target,
  waitForPort,
} from "./_netstat_probe.ts";
import { parseStateName, STATE_NAMES } from "./_netstat_socket.ts";

export {
  type Endpoint,
  parseStateName,
  type ProcessInfo,
  type Protocol,
  PROTOCOLS,
  type SocketEntry,
  STATE_NAMES,
  TCP_STATES,
  UDP_UNCONNECTED,
} from "./_netstat_socket.ts";
export {
  decodeProcNetAddress,
  decodeProcNetLine,
  findSocketOwners,
  type OwnerScan,
  parseProcNet,
  readProcNet,
} from "./_netstat_proc.ts";
export { netstatCommand, parseNetstatOutput } from "./_netstat_system.ts";
export {
  filterSockets,
  formatEndpoint,
  formatSocketTable,
  type ListOptions,
  listSockets,
  type SocketFilter,
  type SocketListing,
  sortSockets,
} from "./_netstat_list.ts";
export {
  type CheckOptions,
  checkPort,
  type CheckResult,
  parseTarget,
  type ProbeStatus,
  type Target,
  waitForPort,
  type WaitOptions,
  type WaitResult,
} from "./_netstat_probe.ts";

const SPEC: CommandSpec = {
  name: "tools/netstat.ts",
  summary:
    'The notes\' "Usage Detection: netstat -a": lists TCP and UDP sockets ' +
    "(IPv4 and IPv6) with state, queues and owning process; --wait waits " +
    "until a port accepts connections; --check says whether addresses are " +
    "reachable.",
  options: {
    listening: {
      type: "boolean",
      short: "l",
      description: "Only listening sockets (TCP LISTEN, unconnected UDP).",
    },
    tcp: { type: "boolean", short: "t", description: "Only TCP sockets." },
    udp: { type: "boolean", short: "u", description: "Only UDP sockets." },
    port: {
      type: "string",
      arg: "PORT",
      description: "Only sockets with this local or remote port (1 to 65535).",
    },
    pid: {
      type: "string",
      arg: "PID",
      description: "Only sockets held by this process.",
    },
    state: {
      type: "string",
      arg: "NAME",
      description: "Only sockets in this state (LISTEN, TIME_WAIT, ...).",
    },
    json: {
      type: "boolean",
      description: "Print JSON for scripts instead of a table.",
    },
    source: {
      type: "string",
      arg: "WHERE",
      default: "auto",
      description: "proc (needs -A), netstat or auto.",
    },
    wait: {
      type: "string",
      arg: "PORT",
      description: "Wait until PORT accepts TCP connections.",
    },
    host: {
      type: "string",
      arg: "HOST",
      description: "Host --wait connects to (default 127.0.0.1).",
    },
    check: {
      type: "string",
      arg: "HOST:PORT",
      multiple: true,
      description: "Try a TCP connect; repeatable, IPv6 as [::1]:PORT.",
    },
    timeout: {
      type: "string",
      arg: "SECONDS",
      description: "Limit for --wait (default 30) or --check (3).",
    },
  },
  epilog: `Examples:
  tools/netstat.ts -l                    listening sockets and their programs
  tools/netstat.ts --port 8080           who uses port 8080, either end
  tools/netstat.ts -t --state time-wait --json
  tools/netstat.ts --wait 8080 --timeout 10 && run-the-tests
  tools/netstat.ts --check 127.0.0.1:8080 --check [::1]:8080

Permissions: the listing needs --allow-run=netstat (it runs netstat -anpW on
Linux, -an on macOS and BSD, -ano on Windows). Reading /proc itself (--source
proc) needs -A: Deno 2.9.6 opens nothing under /proc with less. --wait and
--check need --allow-net to the hosts they try.`,
};

const LISTING_OPTIONS = [
  "listening",
  "tcp",
  "udp",
  "port",
  "pid",
  "state",
] as const;

/**
 * The command line: list sockets, or `--wait`, or `--check`.
 *
 * @param args Command-line arguments, as `Deno.args`.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, SPEC);
  if (!parsed) return 0;
  const v = parsed.values;
  const checks = (v.check as string[] | undefined) ?? [];
  const json = v.json === true;
  const timeout = v.timeout === undefined
    ? undefined
    : parseSeconds(v.timeout, "--timeout");
  const given = LISTING_OPTIONS.filter((name) => v[name] !== undefined);
  const source = String(v.source);
  if (!["auto", "proc", "netstat"].includes(source)) {
    throw new UsageError(
      `Cannot use --source "${source}": expected auto, proc or netstat`,
    );
  }
  if (v.wait !== undefined && checks.length > 0) {
    throw new UsageError("Give either --wait or --check, not both");
  }
  if (v.wait !== undefined || checks.length > 0) {
    if (given.length > 0) {
      throw new UsageError(
        `--${given[0]} filters the listing; it does not apply to --${
          v.wait !== undefined ? "wait" : "check"
        }`,
      );
    }
  } else if (timeout !== undefined) {
    throw new UsageError("--timeout applies to --wait and --check only");
  }
  if (v.host !== undefined && v.wait === undefined) {
    throw new UsageError(
      "--host applies to --wait only (--check takes HOST:PORT)",
    );
  }
  if (v.wait !== undefined) {
    return await waitMain({
      hostname: v.host === undefined
        ? "127.0.0.1"
        : parseHost(v.host, "--host"),
      port: parseInteger(v.wait, "--wait", 1, 65535),
      timeout: timeout ?? 30_000,
      json,
    });
  }
  if (checks.length > 0) {
    const targets = checks.map((text) => {
      try {
        return parseTarget(text, "--check");
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    });
    return await checkMain(targets, timeout ?? 3000, json);
  }
  let state: string | undefined;
  if (v.state !== undefined) {
    try {
      state = parseStateName(String(v.state));
    } catch {
      throw new UsageError(
        `Cannot parse --state "${v.state}": expected one of ${
          STATE_NAMES.join(", ")
        }`,
      );
    }
  }
  const listing = await listSockets({
    listening: v.listening === true,
    tcp: v.tcp === true,
    udp: v.udp === true,
    // A listener's remote end is port 0 (`*`): --port 0 would list them all.
    ...(v.port === undefined
      ? {}
      : { port: parseInteger(v.port, "--port", 1, 65535) }),
    ...(v.pid === undefined ? {} : { pid: parseInteger(v.pid, "--pid", 1) }),
    ...(state === undefined ? {} : { state }),
    source: source as "auto" | "proc" | "netstat",
  });
  console.log(
    json ? JSON.stringify(listing, null, 2) : formatSocketTable(listing),
  );
  return 0;
}

async function waitMain(
  options: Target & { timeout: number; json: boolean },
): Promise<number> {
  const where = formatAddr(options);
  // Only on a terminal: elsewhere the first failure's line says enough.
  using status = new StatusLine();
  const tty = !options.json && status.live;
  const start = performance.now();
  // Ctrl-C ends the wait with one line, and a cleared status line.
  using shutdown = shutdownSignal();
  try {
    const up = await waitForPort({
      ...options,
      signal: shutdown.signal,
      onAttempt({ attempt, result }) {
        if (attempt === 1 && !options.json) {
          // The first failure is news (and the line scripts and tests wait
          // for); later ones only refresh a terminal's status line.
          console.log(
            `waiting for ${where} (${result.reason ?? result.status}; ` +
              `timeout ${options.timeout / 1000} s)`,
          );
        } else if (tty) {
          const elapsed = (performance.now() - start) / 1000;
          status.show([
            `${elapsed.toFixed(1)} s of ${options.timeout / 1000} s`,
            `${attempt} attempts`,
            `last: ${result.reason ?? result.status}`,
          ]);
        }
      },
    });
    status.clear();
    console.log(
      options.json
        ? JSON.stringify({ ...up, up: true })
        : `${where} accepts connections (after ${
          (up.elapsedMs / 1000).toFixed(2)
        } s, ${up.attempts} attempt${up.attempts === 1 ? "" : "s"})`,
    );
    return 0;
  } catch (error) {
    status.clear();
    if (shutdown.signal.aborted) {
      throw new CliError(`Interrupted while waiting for ${where}`);
    }
    if (!(error instanceof Deno.errors.TimedOut)) throw error;
    if (options.json) {
      console.log(JSON.stringify({
        hostname: options.hostname,
        port: options.port,
        up: false,
      }));
    }
    console.error(`error: ${error.message}`);
    return EXIT_FAILURE;
  }
}

async function checkMain(
  targets: Target[],
  timeout: number,
  json: boolean,
): Promise<number> {
  // A handful of targets: all at once, so the slowest sets the run time.
  const results = await Promise.all(
    targets.map((target) => checkPort(target, { timeout })),
  );
  const closed = results.filter((r) => r.status !== "open").length;
  if (json) {
    console.log(JSON.stringify({ results, allOpen: closed === 0 }, null, 2));
  } else {
    const rows = results.map((r) => [
      formatAddr(r),
      r.status === "error" ? `error: ${r.reason}` : r.status,
      formatMs(r.ms),
    ]);
    for (const line of alignColumns(rows)) console.log(line);
  }
  if (closed === 0) return 0;
  console.error(
    `error: ${closed} of ${results.length} target${
      results.length === 1 ? "" : "s"
    } not open`,
  );
  return EXIT_FAILURE;
}

function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

if (import.meta.main) runMain(main);
