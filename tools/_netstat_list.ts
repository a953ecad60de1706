/**
 * netstat's listing: the sockets of either source filtered, their owners
 * found (from `/proc`, only for the sockets kept), sorted for reading, and
 * rendered as the aligned table netstat prints.
 *
 * Private to tools/netstat.ts, which re-exports what is public.
 *
 * @module
 */

import { CliError, describeError } from "../_cli.ts";
import { alignColumns } from "../_format.ts";
import { formatAddr } from "../_net.ts";
import { findSocketOwners, readProcNet } from "./_netstat_proc.ts";
import {
  type Endpoint,
  parseStateName,
  PROTOCOLS,
  type SocketEntry,
  UDP_UNCONNECTED,
} from "./_netstat_socket.ts";
import { parseNetstatOutput, runNetstat } from "./_netstat_system.ts";

/** Which sockets to keep. Every field is optional; all given must match. */
export interface SocketFilter {
  /** Only listening sockets: TCP in LISTEN, UDP not connected. */
  listening?: boolean;
  /** Only TCP (with `udp`, both). */
  tcp?: boolean;
  /** Only UDP (with `tcp`, both). */
  udp?: boolean;
  /** Only sockets whose local or remote port is this one. */
  port?: number;
  /** Only sockets held by this process. */
  pid?: number;
  /** Only sockets in this state; any case, `-` or `_` (see {@linkcode parseStateName}). */
  state?: string;
}

/**
 * Keeps the sockets that match every field of `filter`.
 *
 * @param sockets Sockets, as from {@linkcode readProcNet}.
 * @param filter What to keep.
 * @returns The matching sockets, in their order.
 * @throws {RangeError} If `filter.state` is no known state.
 *
 * @example
 * ```ts
 * import { filterSockets, readProcNet } from "./netstat.ts";
 *
 * const listening = filterSockets(await readProcNet(), { listening: true, tcp: true });
 * console.log(listening.every((s) => s.state === "LISTEN")); // true
 * ```
 */
export function filterSockets(
  sockets: readonly SocketEntry[],
  filter: SocketFilter,
): SocketEntry[] {
  const state = filter.state === undefined
    ? undefined
    : parseStateName(filter.state);
  const bothKinds = !filter.tcp && !filter.udp;
  return sockets.filter((s) => {
    const udp = s.protocol.startsWith("udp");
    if (!bothKinds && !(udp ? filter.udp : filter.tcp)) return false;
    if (filter.listening && s.state !== (udp ? UDP_UNCONNECTED : "LISTEN")) {
      return false;
    }
    if (state !== undefined && s.state !== state) return false;
    if (
      filter.port !== undefined && s.local.port !== filter.port &&
      s.remote.port !== filter.port
    ) return false;
    if (
      filter.pid !== undefined && !s.processes.some((p) => p.pid === filter.pid)
    ) return false;
    return true;
  });
}

/** Options of {@linkcode listSockets}: a filter and where to look. */
export interface ListOptions extends SocketFilter {
  /**
   * `proc` reads `/proc` itself, `netstat` runs the platform's netstat,
   * `auto` (the default) reads `/proc` where it exists and may be read, and
   * runs netstat otherwise.
   */
  source?: "auto" | "proc" | "netstat";
}

/** What {@linkcode listSockets} returns. */
export interface SocketListing {
  /** Where the table came from. */
  source: "proc" | "netstat";
  /** The files read or the command run, for people. */
  from: string;
  /** The sockets that matched, sorted (see {@linkcode sortSockets}). */
  sockets: SocketEntry[];
  /** Gaps a reader should know of (owners that could not be seen). */
  notes: string[];
}

/**
 * Usage Detection (the notes' `netstat -a`): lists TCP and UDP sockets,
 * IPv4 and IPv6, with state, queues and owning processes, keeping those
 * that match the filter.
 *
 * Requires `--allow-run=netstat` for the netstat source; reading `/proc`
 * itself (Linux) requires `-A`, since Deno 2.9.6 opens nothing under
 * `/proc` with less. `auto` takes whichever it is allowed.
 *
 * @param options The filter, and which source to use.
 * @returns The matching sockets and where they came from.
 * @throws {CliError} If no source can be used, or `pid` is asked of a
 * source that does not report owners.
 * @throws {RangeError} If `options.state` is no known state.
 *
 * @example
 * ```ts
 * import { listSockets } from "./netstat.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { sockets } = await listSockets({ port: listener.addr.port, listening: true });
 * console.log(sockets[0]!.processes[0]!.pid === Deno.pid); // true
 * ```
 */
export async function listSockets(
  options: ListOptions = {},
): Promise<SocketListing> {
  if (options.state !== undefined) parseStateName(options.state);
  const source = options.source ?? "auto";
  const linux = Deno.build.os === "linux" || Deno.build.os === "android";
  let procProblem: string | undefined;
  if (source === "proc" || (source === "auto" && linux)) {
    let all: SocketEntry[] | undefined;
    try {
      all = await readProcNet();
    } catch (error) {
      procProblem = error instanceof Deno.errors.NotCapable
        ? "Deno opens /proc only with -A (every permission)"
        : error instanceof Deno.errors.NotFound
        ? "there is no /proc/net/tcp here"
        : describeError(error);
      if (source === "proc") {
        throw new CliError(`Cannot read /proc/net/tcp: ${procProblem}`, {
          cause: error,
        });
      }
    }
    if (all) return await withProcOwners(all, options);
  }
  const ran = await runNetstat();
  if ("problem" in ran) {
    throw new CliError(
      procProblem
        ? `Cannot list sockets: /proc: ${procProblem}; ${ran.problem}`
        : `Cannot list sockets: ${ran.problem}`,
    );
  }
  const all = parseNetstatOutput(ran.stdout, Deno.build.os);
  const hasOwners = linux || Deno.build.os === "windows";
  if (options.pid !== undefined && !hasOwners) {
    throw new CliError(
      `Cannot filter by --pid: ${ran.command} does not show owners`,
    );
  }
  const notes = [];
  if (procProblem) notes.push(`Not read from /proc: ${procProblem}`);
  if (!hasOwners) notes.push(`Owners not shown: ${ran.command} has none`);
  // net-tools says "(Not all processes could be identified, ...)" when
  // others' processes hide their sockets from a non-root user.
  // It wraps that over two lines: make it one.
  const warning = ran.stderr.trim().replace(/\s+/g, " ").replace(
    /^\((.*)\)$/,
    "$1",
  );
  if (warning) notes.push(`netstat: ${warning}`);
  return {
    source: "netstat",
    from: ran.command,
    sockets: sortSockets(filterSockets(all, options)),
    notes,
  };
}

/** Filters sockets from `/proc`, then finds owners of those that remain. */
async function withProcOwners(
  all: SocketEntry[],
  options: ListOptions,
): Promise<SocketListing> {
  const notes: string[] = [];
  const { pid, ...rest } = options;
  // Filter first: the owner scan reads every process's fd table, so it
  // should look only for the inodes that will be shown.
  const sockets = filterSockets(all, rest);
  const inodes = new Set(
    sockets.map((s) => s.inode ?? 0).filter((inode) => inode > 0),
  );
  const scan = await findSocketOwners(
    inodes,
    pid === undefined ? undefined : [pid],
  );
  for (const s of sockets) s.processes = scan.owners.get(s.inode ?? 0) ?? [];
  if (scan.unreadable.length > 0) {
    const n = scan.unreadable.length;
    notes.push(
      `${n} process${n === 1 ? "" : "es"} could not be inspected ` +
        `(permission denied): sockets they hold show no owner; run as ` +
        `their user or root to see them`,
    );
  }
  return {
    source: "proc",
    from: "/proc/net/{tcp,tcp6,udp,udp6}, owners from /proc/PID/fd",
    sockets: sortSockets(
      pid === undefined ? sockets : filterSockets(sockets, { pid }),
    ),
    notes,
  };
}

/**
 * Sorts sockets for reading: by protocol (tcp, tcp6, udp, udp6), listeners
 * first, then by local port, local address, remote port, remote address.
 *
 * @param sockets The sockets; the array is sorted in place.
 * @returns The same array.
 *
 * @example
 * ```ts
 * import { readProcNet, sortSockets } from "./netstat.ts";
 *
 * console.log(sortSockets(await readProcNet())[0]?.protocol); // "tcp"
 * ```
 */
export function sortSockets(sockets: SocketEntry[]): SocketEntry[] {
  const listening = (s: SocketEntry) =>
    s.state === "LISTEN" || s.state === UDP_UNCONNECTED ? 0 : 1;
  return sockets.sort((a, b) =>
    PROTOCOLS.indexOf(a.protocol) - PROTOCOLS.indexOf(b.protocol) ||
    listening(a) - listening(b) ||
    a.local.port - b.local.port ||
    compareText(a.local.address, b.local.address) ||
    a.remote.port - b.remote.port ||
    compareText(a.remote.address, b.remote.address)
  );
}

// Code-unit order: localeCompare would consult ICU on each of the tens of
// thousands of comparisons a busy host's table needs.
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Formats an endpoint as the table shows it: `HOST:PORT`, an IPv6 address
 * in brackets, port 0 (none bound or connected) as `*`, as netstat does.
 *
 * @param endpoint The address and port.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { formatEndpoint } from "./netstat.ts";
 *
 * console.log(formatEndpoint({ address: "::", port: 0 })); // "[::]:*"
 * ```
 */
export function formatEndpoint(endpoint: Endpoint): string {
  if (endpoint.port !== 0) {
    return formatAddr({ hostname: endpoint.address, port: endpoint.port });
  }
  return endpoint.address.includes(":")
    ? `[${endpoint.address}]:*`
    : `${endpoint.address}:*`;
}

/**
 * Renders a listing as an aligned table for people: a line naming the
 * source, a header, one row per socket, then the notes.
 *
 * @param listing What {@linkcode listSockets} returned.
 * @returns The text, without a final newline.
 *
 * @example
 * ```ts
 * import { formatSocketTable, listSockets } from "./netstat.ts";
 *
 * console.log(formatSocketTable(await listSockets({ listening: true })));
 * ```
 */
export function formatSocketTable(listing: SocketListing): string {
  const rows = [[
    "Proto",
    "Recv-Q",
    "Send-Q",
    "Local Address",
    "Foreign Address",
    "State",
    "PID/Program",
  ]];
  for (const s of listing.sockets) {
    const [first, ...more] = s.processes;
    const owner = first
      ? `${first.pid}${first.program === null ? "" : `/${first.program}`}${
        more.length ? ` (+${more.length})` : ""
      }`
      : "-";
    rows.push([
      s.protocol,
      String(s.recvQueue),
      String(s.sendQueue),
      formatEndpoint(s.local),
      formatEndpoint(s.remote),
      s.state,
      owner,
    ]);
  }
  const lines = [
    `${listing.sockets.length} socket${
      listing.sockets.length === 1 ? "" : "s"
    } from ${listing.from}`,
    // Queues are numbers: right-aligned, as netstat does.
    ...alignColumns(rows, (i) => i === 1 || i === 2).map((l) => l.trimEnd()),
  ];
  for (const note of listing.notes) lines.push(`note: ${note}`);
  return lines.join("\n");
}
