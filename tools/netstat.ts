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
  describeError,
  EXIT_FAILURE,
  parseCommandLine,
  parseHost,
  parseInteger,
  parseSeconds,
  runMain,
  shutdownSignal,
  sleep,
  UsageError,
} from "../_cli.ts";
import { bareHost, connect, ConnectError, formatAddr } from "../_net.ts";

// ---------------------------------------------------------------------------
// Usage Detection: the socket table
// ---------------------------------------------------------------------------

/** The protocols listed, named as netstat names them. */
export type Protocol = "tcp" | "tcp6" | "udp" | "udp6";

/** Every protocol, in the order the listing shows them. */
export const PROTOCOLS: readonly Protocol[] = ["tcp", "tcp6", "udp", "udp6"];

/** One end of a socket. */
export interface Endpoint {
  /** The address, as `127.0.0.1`, `::1` or `::ffff:127.0.0.1`. */
  address: string;
  /** The port; 0 where none is bound or connected (netstat shows `*`). */
  port: number;
}

/** A process that holds a socket open. */
export interface ProcessInfo {
  /** Process id. */
  pid: number;
  /** Program name (`/proc/PID/comm`), or `null` where the source has none. */
  program: string | null;
}

/** One socket of the table. */
export interface SocketEntry {
  /** `tcp`, `tcp6`, `udp` or `udp6`: the table it came from. */
  protocol: Protocol;
  /** Local address and port. */
  local: Endpoint;
  /** Remote address and port; the unspecified address and 0 if none. */
  remote: Endpoint;
  /**
   * TCP state by the kernel's name (`LISTEN`, `ESTABLISHED`, `TIME_WAIT`,
   * ...); for UDP, `UNCONN` (not connected) or `ESTABLISHED` (connected).
   */
  state: string;
  /**
   * Bytes received and not yet read by the program; for a TCP listener on
   * Linux, connections waiting in the accept queue.
   */
  recvQueue: number;
  /** Bytes sent and not yet acknowledged by the peer (TCP). */
  sendQueue: number;
  /** Owner's user id, where the source reports it. */
  uid: number | null;
  /**
   * Socket inode, where the source reports it; 0 for a socket no process
   * holds any more (TIME_WAIT, an unaccepted connection).
   */
  inode: number | null;
  /** Processes holding the socket open, lowest pid first; empty if unknown. */
  processes: ProcessInfo[];
}

/**
 * The kernel's TCP states by number (`include/net/tcp_states.h`), with the
 * names netstat prints.
 */
export const TCP_STATES: Readonly<Record<number, string>> = {
  0x01: "ESTABLISHED",
  0x02: "SYN_SENT",
  0x03: "SYN_RECV",
  0x04: "FIN_WAIT1",
  0x05: "FIN_WAIT2",
  0x06: "TIME_WAIT",
  0x07: "CLOSE",
  0x08: "CLOSE_WAIT",
  0x09: "LAST_ACK",
  0x0a: "LISTEN",
  0x0b: "CLOSING",
  0x0c: "NEW_SYN_RECV",
  0x0d: "BOUND_INACTIVE",
};

/** The state of a UDP socket that is not connected (ss's name). */
export const UDP_UNCONNECTED = "UNCONN";

/** Every state name `--state` accepts. */
export const STATE_NAMES: readonly string[] = [
  ...Object.values(TCP_STATES),
  UDP_UNCONNECTED,
];

/** Names other netstats use, mapped to the kernel's. */
const STATE_ALIASES: Record<string, string> = {
  LISTENING: "LISTEN",
  SYN_RECEIVED: "SYN_RECV",
  SYN_RCVD: "SYN_RECV",
  FIN_WAIT_1: "FIN_WAIT1",
  FIN_WAIT_2: "FIN_WAIT2",
  CLOSED: "CLOSE",
};

/**
 * Turns a state name as a user types it (`listen`, `time-wait`) into the
 * name the table uses (`LISTEN`, `TIME_WAIT`). Other systems' names are
 * taken too: `LISTENING`, `SYN_RECEIVED`, `FIN_WAIT_1`, `CLOSED`.
 *
 * @param name A state name, in any case, with `-` or `_`.
 * @returns The canonical name, one of {@linkcode STATE_NAMES}.
 * @throws {RangeError} If `name` is no known state.
 *
 * @example
 * ```ts
 * import { parseStateName } from "./netstat.ts";
 *
 * console.log(parseStateName("time-wait")); // "TIME_WAIT"
 * ```
 */
export function parseStateName(name: string): string {
  const upper = name.trim().toUpperCase().replaceAll("-", "_");
  const canonical = STATE_ALIASES[upper] ?? upper;
  if (!STATE_NAMES.includes(canonical)) {
    throw new RangeError(
      `Unknown state "${name}": expected one of ${STATE_NAMES.join(", ")}`,
    );
  }
  return canonical;
}

/** Hex digits, for validating the kernel's fields. */
const HEX8 = /^[0-9A-Fa-f]{8}$/;
const HEX32 = /^[0-9A-Fa-f]{32}$/;
const HEX4 = /^[0-9A-Fa-f]{4}$/;

/**
 * Decodes an address as `/proc/net/tcp*` and `udp*` print it:
 * `0100007F:1F90` is 127.0.0.1 port 8080. The kernel prints the address as
 * 32-bit words in the host's byte order (one word for IPv4, four for IPv6),
 * so on a little-endian machine each word's bytes come out reversed; the
 * port is printed as a number. An IPv4-mapped IPv6 address comes out as
 * `::ffff:a.b.c.d`.
 *
 * Assumes a little-endian kernel (x86, arm64, riscv64 and every common
 * Linux machine).
 *
 * @param text The `ADDRESS:PORT` field, 8 or 32 hex digits, a colon, 4 hex
 * digits.
 * @returns The address in its usual text form and the port.
 * @throws {RangeError} If `text` is not such a field.
 *
 * @example
 * ```ts
 * import { decodeProcNetAddress } from "./netstat.ts";
 *
 * console.log(decodeProcNetAddress("0100007F:1F90"));
 * // { address: "127.0.0.1", port: 8080 }
 * console.log(decodeProcNetAddress("00000000000000000000000001000000:0050"));
 * // { address: "::1", port: 80 }
 * ```
 */
export function decodeProcNetAddress(text: string): Endpoint {
  const colon = text.indexOf(":");
  const hex = text.slice(0, colon);
  const portHex = text.slice(colon + 1);
  if (
    colon < 0 || !HEX4.test(portHex) || !(HEX8.test(hex) || HEX32.test(hex))
  ) {
    throw new RangeError(
      `Cannot decode address "${text}": expected 8 or 32 hex digits, ":", 4 hex digits`,
    );
  }
  const bytes = new Uint8Array(hex.length / 2);
  for (let word = 0; word < bytes.length / 4; word++) {
    // The word as printed is a number; its lowest byte came first in memory.
    const n = parseInt(hex.slice(word * 8, word * 8 + 8), 16);
    bytes[word * 4] = n & 0xff;
    bytes[word * 4 + 1] = (n >>> 8) & 0xff;
    bytes[word * 4 + 2] = (n >>> 16) & 0xff;
    bytes[word * 4 + 3] = n >>> 24;
  }
  return {
    address: bytes.length === 4 ? formatIpv4(bytes) : formatIpv6(bytes),
    port: parseInt(portHex, 16),
  };
}

function formatIpv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/** Formats 16 bytes as RFC 5952 text: lower case, longest zero run as `::`. */
function formatIpv6(bytes: Uint8Array): string {
  if (
    bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff &&
    bytes[11] === 0xff
  ) {
    return `::ffff:${formatIpv4(bytes.subarray(12))}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestAt = -1;
  let bestLength = 1; // RFC 5952: a single zero group is not shortened
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestAt, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${
    hex.slice(bestAt + bestLength).join(":")
  }`;
}

/**
 * Decodes one line of `/proc/net/tcp`, `tcp6`, `udp` or `udp6`:
 * `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt
 * uid timeout inode ...`.
 *
 * @param line A line of the table (not its header).
 * @param protocol The table the line came from.
 * @returns The socket, with no owners yet (`processes` is empty).
 * @throws {RangeError} If the line is not in the kernel's format or its
 * addresses do not fit `protocol`.
 *
 * @example
 * ```ts
 * import { decodeProcNetLine } from "./netstat.ts";
 *
 * const line = "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 " +
 *   "00:00000000 00000000  1000  0 4242 1 0000000000000000 100 0 0 10 0";
 * const socket = decodeProcNetLine(line, "tcp");
 * console.log(socket.state, socket.local); // LISTEN { address: "127.0.0.1", port: 8080 }
 * ```
 */
export function decodeProcNetLine(
  line: string,
  protocol: Protocol,
): SocketEntry {
  const fields = line.trim().split(/\s+/);
  const [sl, local, remote, st, queues, , , uid, , inode] = fields;
  const [tx, rx] = (queues ?? "").split(":");
  const v6 = protocol.endsWith("6");
  const width = v6 ? 32 : 8;
  if (
    fields.length < 10 || !/^\d+:$/.test(sl!) ||
    local!.indexOf(":") !== width || remote!.indexOf(":") !== width ||
    !/^[0-9A-Fa-f]{2}$/.test(st!) || !HEX8.test(tx ?? "") ||
    !HEX8.test(rx ?? "") || !/^\d+$/.test(uid!) || !/^\d+$/.test(inode!)
  ) {
    throw new RangeError(
      `Cannot decode /proc/net/${protocol} line "${line.trim()}": ` +
        `expected the kernel's format with ${
          v6 ? "IPv6 (32 hex digit)" : "IPv4 (8 hex digit)"
        } addresses`,
    );
  }
  const code = parseInt(st!, 16);
  let state = TCP_STATES[code] ?? `UNKNOWN(0x${st!.toUpperCase()})`;
  // UDP reuses TCP's numbers: CLOSE is an unconnected socket, ESTABLISHED a
  // connected one.
  if (protocol.startsWith("udp") && code === 0x07) state = UDP_UNCONNECTED;
  return {
    protocol,
    local: decodeProcNetAddress(local!),
    remote: decodeProcNetAddress(remote!),
    state,
    recvQueue: parseInt(rx!, 16),
    sendQueue: parseInt(tx!, 16),
    uid: Number(uid),
    inode: Number(inode),
    processes: [],
  };
}

/**
 * Decodes a whole `/proc/net/{tcp,tcp6,udp,udp6}` table (its header line is
 * skipped).
 *
 * @param text The file's content.
 * @param protocol Which table it is.
 * @returns One entry per socket, in the kernel's order.
 * @throws {RangeError} If a line is not in the kernel's format.
 *
 * @example
 * ```ts
 * import { parseProcNet } from "./netstat.ts";
 *
 * const text = await Deno.readTextFile("/proc/net/tcp");
 * console.log(parseProcNet(text, "tcp").length);
 * ```
 */
export function parseProcNet(text: string, protocol: Protocol): SocketEntry[] {
  const sockets: SocketEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "" || /^\s*sl\s/.test(line)) continue;
    sockets.push(decodeProcNetLine(line, protocol));
  }
  return sockets;
}

/**
 * Reads the four kernel tables. A table that does not exist (IPv6 switched
 * off) counts as empty.
 *
 * Requires `-A` for the real `/proc/net` (Deno 2.9.6 opens nothing under
 * `/proc` with less); `--allow-read` of `root` for a copy elsewhere.
 *
 * @param root Where the tables are; `/proc/net` unless testing.
 * @returns Every socket of the four tables, with no owners yet.
 *
 * @example
 * ```ts
 * import { readProcNet } from "./netstat.ts";
 *
 * const sockets = await readProcNet();
 * console.log(sockets.filter((s) => s.state === "LISTEN").length);
 * ```
 */
export async function readProcNet(root = "/proc/net"): Promise<SocketEntry[]> {
  const sockets: SocketEntry[] = [];
  for (const protocol of PROTOCOLS) {
    let text: string;
    try {
      text = await Deno.readTextFile(`${root}/${protocol}`);
    } catch (error) {
      // tcp missing means no /proc at all; let the caller fall back.
      if (error instanceof Deno.errors.NotFound && protocol !== "tcp") continue;
      throw error;
    }
    sockets.push(...parseProcNet(text, protocol));
  }
  return sockets;
}

/** What {@linkcode findSocketOwners} found. */
export interface OwnerScan {
  /** Processes holding each socket inode, lowest pid first. */
  owners: Map<number, ProcessInfo[]>;
  /** How many processes' fd tables were read. */
  inspected: number;
  /** Pids whose fd table the user may not read (another user's process). */
  unreadable: number[];
}

/**
 * Finds which processes hold the given socket inodes, by reading every
 * link `/proc/PID/fd/N` (a socket reads `socket:[INODE]`) and naming the
 * process from `/proc/PID/comm`. Processes the user may not inspect are
 * skipped and counted; processes that exit during the scan are ignored.
 *
 * Requires `-A` for the real `/proc` (as {@linkcode readProcNet});
 * `--allow-read` of `proc` for a copy elsewhere.
 *
 * @param inodes The inodes to look for.
 * @param pids Look only at these processes; every process if omitted.
 * @param proc Where procfs is; `/proc` unless testing.
 * @returns The owners found and what could not be read.
 *
 * @example
 * ```ts
 * import { findSocketOwners, readProcNet } from "./netstat.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const mine = (await readProcNet()).find((s) =>
 *   s.state === "LISTEN" && s.local.port === listener.addr.port
 * )!;
 * const scan = await findSocketOwners(new Set([mine.inode!]), [Deno.pid]);
 * console.log(scan.owners.get(mine.inode!)); // [{ pid: ..., program: "deno" }]
 * ```
 */
export async function findSocketOwners(
  inodes: ReadonlySet<number>,
  pids?: readonly number[],
  proc = "/proc",
): Promise<OwnerScan> {
  const scan: OwnerScan = { owners: new Map(), inspected: 0, unreadable: [] };
  if (inodes.size === 0) return scan;
  let candidates: number[];
  if (pids) {
    candidates = [...pids];
  } else {
    candidates = [];
    for await (const entry of Deno.readDir(proc)) {
      if (/^\d+$/.test(entry.name)) candidates.push(Number(entry.name));
    }
  }
  candidates.sort((a, b) => a - b);
  for (const pid of candidates) {
    const found = await socketsOf(pid, inodes, proc);
    if (found === "unreadable") {
      scan.unreadable.push(pid);
      continue;
    }
    if (found === "gone") continue;
    scan.inspected++;
    if (found.length === 0) continue;
    const program = await readComm(pid, proc);
    for (const inode of found) {
      const list = scan.owners.get(inode) ?? [];
      if (!list.some((p) => p.pid === pid)) list.push({ pid, program });
      scan.owners.set(inode, list);
    }
  }
  return scan;
}

/** The wanted socket inodes `pid` holds, or why its fd table is closed. */
async function socketsOf(
  pid: number,
  inodes: ReadonlySet<number>,
  proc: string,
): Promise<number[] | "unreadable" | "gone"> {
  const dir = `${proc}/${pid}/fd`;
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "gone";
    if (error instanceof Deno.errors.PermissionDenied) return "unreadable";
    throw error; // NotCapable (no --allow-read) and the unexpected
  }
  const links = await Promise.all(names.map(async (name) => {
    try {
      return await Deno.readLink(`${dir}/${name}`);
    } catch {
      return ""; // the fd closed between readDir and readLink
    }
  }));
  const found: number[] = [];
  for (const link of links) {
    const match = /^socket:\[(\d+)\]$/.exec(link);
    if (match && inodes.has(Number(match[1]))) found.push(Number(match[1]));
  }
  return found;
}

async function readComm(pid: number, proc: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(`${proc}/${pid}/comm`)).trimEnd();
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// The fallback: the platform's own netstat
// ---------------------------------------------------------------------------

/**
 * The netstat command line the `netstat` source runs on a platform.
 *
 * @param os The platform, as `Deno.build.os`.
 * @returns The program and its arguments.
 *
 * @example
 * ```ts
 * import { netstatCommand } from "./netstat.ts";
 *
 * console.log(netstatCommand("linux")); // ["netstat", "-anpW"]
 * ```
 */
export function netstatCommand(os: typeof Deno.build.os): string[] {
  // -W: net-tools truncates long IPv6 addresses to fit its columns without
  // it. -p (Linux) and -o (Windows) add the owning pid.
  if (os === "linux" || os === "android") return ["netstat", "-anpW"];
  if (os === "windows") return ["netstat", "-ano"];
  return ["netstat", "-an"];
}

function normalState(text: string | undefined, udp: boolean): string {
  if (!text) return udp ? UDP_UNCONNECTED : "CLOSE";
  const upper = text.toUpperCase();
  return STATE_ALIASES[upper] ?? upper;
}

/**
 * Parses what the platform's `netstat` prints (see
 * {@linkcode netstatCommand}) into socket entries. Understands Linux
 * net-tools (`127.0.0.1:8080`, `:::*`, a `PID/Program` column with `-p`),
 * the BSD and macOS form
 * (`tcp46`, `127.0.0.1.8080`, `*.*`) and Windows (`[::1]:8080`, LISTENING,
 * a pid column). Lines that are not TCP or UDP sockets (headers, Unix
 * sockets) are skipped. State names are mapped to the kernel's
 * (`LISTENING` to `LISTEN`, `FIN_WAIT_1` to `FIN_WAIT1`).
 *
 * @param text netstat's output.
 * @param os The platform that printed it, as `Deno.build.os`.
 * @returns The sockets; `inode` and `uid` are `null`; `processes` holds
 * what the output shows: pid and program from Linux `-p`, the pid alone
 * from Windows `-o`, nothing from the BSDs.
 *
 * @example
 * ```ts
 * import { parseNetstatOutput } from "./netstat.ts";
 *
 * const text = "tcp4  0  0  127.0.0.1.8080  *.*  LISTEN\n";
 * console.log(parseNetstatOutput(text, "darwin")[0]!.local);
 * // { address: "127.0.0.1", port: 8080 }
 * ```
 */
export function parseNetstatOutput(
  text: string,
  os: typeof Deno.build.os,
): SocketEntry[] {
  const sockets: SocketEntry[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const fields = raw.trim().split(/\s+/);
    const entry = os === "windows"
      ? windowsLine(fields)
      : os === "linux" || os === "android"
      ? linuxLine(fields)
      : bsdLine(fields);
    if (entry) sockets.push(entry);
  }
  return sockets;
}

/** A socket as netstat shows it: no inode, no uid, at most one owner. */
function entry(
  fields: Omit<SocketEntry, "uid" | "inode" | "processes"> & {
    owner?: ProcessInfo;
  },
): SocketEntry {
  const { owner, ...rest } = fields;
  return { ...rest, uid: null, inode: null, processes: owner ? [owner] : [] };
}

/**
 * `tcp6  0  0 :::8080  :::*  LISTEN  1234/deno` (net-tools); UDP has no
 * state unless connected; the owner is `-` where the user may not see it.
 */
function linuxLine(fields: string[]): SocketEntry | undefined {
  const [proto, recv, send, local, remote] = fields;
  if (!/^(tcp|udp)6?$/.test(proto ?? "") || fields.length < 5) return;
  const protocol = proto as Protocol;
  const v6 = protocol.endsWith("6");
  const l = splitAt(local!, ":", v6);
  const r = splitAt(remote!, ":", v6);
  if (!l || !r || !/^\d+$/.test(recv!) || !/^\d+$/.test(send!)) return;
  const rest = fields.slice(5);
  const state = /^[A-Z][A-Z0-9_]*$/.test(rest[0] ?? "") ? rest.shift() : "";
  // A program name may hold spaces: the owner is the rest of the line.
  const owner = /^(\d+)\/(.*)$/.exec(rest.join(" "));
  return entry({
    protocol,
    local: l,
    remote: r,
    state: normalState(state, protocol.startsWith("udp")),
    recvQueue: Number(recv),
    sendQueue: Number(send),
    ...(owner ? { owner: { pid: Number(owner[1]), program: owner[2]! } } : {}),
  });
}

/** `tcp46  0  0  *.8080  *.*  LISTEN` (macOS, FreeBSD). */
function bsdLine(fields: string[]): SocketEntry | undefined {
  const [proto, recv, send, local, remote, state] = fields;
  const match = /^(tcp|udp)(4|6|46)?$/.exec(proto ?? "");
  if (!match || fields.length < 5) return;
  const v6 = match[2] === "6" || match[2] === "46";
  const protocol = `${match[1]}${v6 ? "6" : ""}` as Protocol;
  const l = splitAt(local!, ".", v6);
  const r = splitAt(remote!, ".", v6);
  if (!l || !r || !/^\d+$/.test(recv!) || !/^\d+$/.test(send!)) return;
  return entry({
    protocol,
    local: l,
    remote: r,
    state: normalState(state, match[1] === "udp"),
    recvQueue: Number(recv),
    sendQueue: Number(send),
  });
}

/** `TCP  [::]:135  [::]:0  LISTENING  1004`; UDP has no state. */
function windowsLine(fields: string[]): SocketEntry | undefined {
  const [proto, local, remote] = fields;
  if (!/^(TCP|UDP)$/i.test(proto ?? "") || fields.length < 3) return;
  const udp = proto!.toUpperCase() === "UDP";
  const v6 = local!.startsWith("[");
  const protocol = `${udp ? "udp" : "tcp"}${v6 ? "6" : ""}` as Protocol;
  let rest = fields.slice(3);
  const last = rest.at(-1);
  const pid = last && /^\d+$/.test(last) ? Number(last) : undefined;
  if (pid !== undefined) rest = rest.slice(0, -1);
  const l = splitAt(local!, ":", v6);
  const r = splitAt(remote!, ":", v6);
  if (!l || !r) return;
  // Windows netstat shows no queues.
  return entry({
    protocol,
    local: l,
    remote: r,
    state: normalState(rest[0], udp),
    recvQueue: 0,
    sendQueue: 0,
    ...(pid === undefined ? {} : { owner: { pid, program: null } }),
  });
}

/**
 * Splits `HOST<sep>PORT` at the last separator; `*` as a port is 0 and `*`
 * as a host the unspecified address; brackets around a host are removed.
 */
function splitAt(text: string, sep: string, v6: boolean): Endpoint | undefined {
  const at = text.lastIndexOf(sep);
  if (at < 0) return;
  let host = text.slice(0, at);
  const port = text.slice(at + 1);
  if (port !== "*" && !/^\d+$/.test(port)) return;
  host = bareHost(host);
  if (host === "*" || host === "") host = v6 ? "::" : "0.0.0.0";
  return { address: host, port: port === "*" ? 0 : Number(port) };
}

// ---------------------------------------------------------------------------
// Listing with filters
// ---------------------------------------------------------------------------

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

/** Runs the platform's netstat; its output, or why it could not run. */
async function runNetstat(): Promise<
  { command: string; stdout: string; stderr: string } | { problem: string }
> {
  const [program, ...args] = netstatCommand(Deno.build.os);
  const command = [program, ...args].join(" ");
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(program!, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      return { problem: `running ${command} needs --allow-run=netstat` };
    }
    if (error instanceof Deno.errors.NotFound) {
      return { problem: "there is no netstat command" };
    }
    return { problem: `cannot run ${command}: ${describeError(error)}` };
  }
  const decoder = new TextDecoder();
  const stderr = decoder.decode(output.stderr);
  if (!output.success) {
    const first = stderr.trim().split("\n")[0];
    return {
      problem: `${command} exited with ${output.code}${
        first ? `: ${first}` : ""
      }`,
    };
  }
  return { command, stdout: decoder.decode(output.stdout), stderr };
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
  const widths = rows[0]!.map((_, i) =>
    Math.max(...rows.map((row) => row[i]!.length))
  );
  const lines = [
    `${listing.sockets.length} socket${
      listing.sockets.length === 1 ? "" : "s"
    } from ${listing.from}`,
  ];
  for (const row of rows) {
    lines.push(
      row.map((cell, i) =>
        // Queues are numbers: right-aligned, as netstat does.
        i === 1 || i === 2 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)
      ).join("  ").trimEnd(),
    );
  }
  for (const note of listing.notes) lines.push(`note: ${note}`);
  return lines.join("\n");
}

// ---------------------------------------------------------------------------
// Is my server up yet: --wait and --check
// ---------------------------------------------------------------------------

/** Where to connect: a host name or address, and a port. */
export interface Target {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** TCP port, 1 to 65535. */
  port: number;
}

/**
 * Parses `HOST:PORT`, with an IPv6 address in brackets (`[::1]:8080`).
 *
 * @param text The target as a user writes it.
 * @param name What the message calls it, as `--check`.
 * @returns The host (without brackets) and port.
 * @throws {RangeError} If there is no host or port, the port is not 1 to
 * 65535, an IPv6 address lacks its brackets, or the colon after them.
 *
 * @example
 * ```ts
 * import { parseTarget } from "./netstat.ts";
 *
 * console.log(parseTarget("[::1]:8080")); // { hostname: "::1", port: 8080 }
 * ```
 */
export function parseTarget(text: string, name = "target"): Target {
  const what = `Cannot parse ${name} "${text}"`;
  let hostname: string;
  let port: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    hostname = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (close < 0 || hostname === "" || rest === "") {
      throw new RangeError(
        `${what}: expected HOST:PORT, as 127.0.0.1:8080 or [::1]:8080`,
      );
    }
    if (!rest.startsWith(":")) {
      throw new RangeError(
        `${what}: no colon between "]" and the port, as [::1]:8080`,
      );
    }
    port = rest.slice(1);
  } else {
    const at = text.lastIndexOf(":");
    hostname = text.slice(0, at);
    port = text.slice(at + 1);
    if (at < 0 || hostname === "") {
      throw new RangeError(
        `${what}: expected HOST:PORT, as 127.0.0.1:8080`,
      );
    }
    if (hostname.includes(":")) {
      throw new RangeError(
        `${what}: put an IPv6 address in brackets, as [::1]:8080`,
      );
    }
  }
  const n = /^\d+$/.test(port) ? Number(port) : NaN;
  if (!(n >= 1 && n <= 65535)) {
    throw new RangeError(`${what}: the port must be 1 to 65535`);
  }
  return { hostname, port: n };
}

/** How one connect attempt ended. */
export type ProbeStatus = "open" | "refused" | "no answer" | "error";

/** What {@linkcode checkPort} found. */
export interface CheckResult extends Target {
  /**
   * `open`: connected; `refused`: nothing listens there; `no answer`: no
   * reply within the timeout (a firewall that drops, a host that is down);
   * `error`: anything else, as a name that does not resolve.
   */
  status: ProbeStatus;
  /** How long the connect took, or how long it waited, in ms. */
  ms: number;
  /** Why it failed, for `error` (and `refused`, `no answer`). */
  reason?: string;
}

/** Options of {@linkcode checkPort}. */
export interface CheckOptions {
  /** How long to wait for an answer, in ms; default 3000. */
  timeout?: number;
  /** Stops the attempt early (it then rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Tries one TCP connect to `target` and says how it went; a connection
 * that opens is closed at once.
 *
 * Requires `--allow-net` to the target.
 *
 * @param target Where to connect.
 * @param options The timeout and an abort signal.
 * @returns Whether it is open, refused or silent, and how long it took.
 * @throws The signal's reason if `options.signal` aborts; a `NotCapable`
 * error without `--allow-net`.
 *
 * @example
 * ```ts
 * import { checkPort } from "./netstat.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const result = await checkPort({ hostname: "127.0.0.1", port: listener.addr.port });
 * console.log(result.status); // "open"
 * ```
 */
export async function checkPort(
  target: Target,
  options: CheckOptions = {},
): Promise<CheckResult> {
  const timeout = options.timeout ?? 3000;
  if (!(timeout > 0)) {
    throw new RangeError(
      `Cannot use timeout "${timeout}": expected ms above 0`,
    );
  }
  options.signal?.throwIfAborted();
  const start = performance.now();
  try {
    const conn = await connect(
      { transport: "tcp", hostname: target.hostname, port: target.port },
      { timeout, ...(options.signal ? { signal: options.signal } : {}) },
    );
    const ms = performance.now() - start;
    conn.close();
    return { ...target, status: "open", ms };
  } catch (wrapped) {
    const ms = performance.now() - start;
    if (options.signal?.aborted) throw options.signal.reason;
    const error = wrapped instanceof ConnectError ? wrapped.cause : wrapped;
    if (error instanceof Deno.errors.NotCapable) throw error;
    // The caller's signal has not aborted: the connect's own timeout did.
    if (error instanceof DOMException && error.name === "AbortError") {
      return {
        ...target,
        status: "no answer",
        ms,
        reason: `no answer within ${timeout / 1000} s`,
      };
    }
    if (error instanceof Deno.errors.ConnectionRefused) {
      return { ...target, status: "refused", ms, reason: "connection refused" };
    }
    return { ...target, status: "error", ms, reason: describeError(error) };
  }
}

/** Options of {@linkcode waitForPort}. */
export interface WaitOptions {
  /** The port to wait for. */
  port: number;
  /** Host to connect to; default `127.0.0.1`. */
  hostname?: string;
  /** How long to wait in all, in ms; default 30000. */
  timeout?: number;
  /** Stops waiting early (the promise then rejects with its reason). */
  signal?: AbortSignal;
  /** Called after each failed attempt (for progress). */
  onAttempt?: (attempt: { attempt: number; result: CheckResult }) => void;
}

/** What {@linkcode waitForPort} reports once the port accepts. */
export interface WaitResult extends Target {
  /** Connect attempts made, the successful one included. */
  attempts: number;
  /** Time from the call until the successful connect, in ms. */
  elapsedMs: number;
}

/** First pause between attempts, in ms; it doubles up to the cap. */
const WAIT_FIRST_DELAY = 10;
/**
 * Longest pause, in ms: short, so a server that comes up is seen within a
 * quarter second, yet no busy loop.
 */
const WAIT_MAX_DELAY = 250;
/** Longest single attempt, in ms, so a dropped SYN does not eat the budget. */
const WAIT_ATTEMPT_LIMIT = 2000;

/**
 * Waits until something accepts TCP connections on a port: tries to
 * connect, and after each failure pauses 10 ms, doubling up to 250 ms,
 * until a connect succeeds or the timeout passes. For scripts and CI that
 * start a server and must wait for it.
 *
 * Requires `--allow-net` to the host.
 *
 * @param options Port, host, timeout, abort signal, progress callback.
 * @returns How many attempts it took and how long.
 * @throws {Deno.errors.TimedOut} If nothing accepted within the timeout;
 * the message names the last failure.
 * @throws {RangeError} If the port or timeout is out of range.
 *
 * @example
 * ```ts
 * import { waitForPort } from "./netstat.ts";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const up = await waitForPort({ port: listener.addr.port, timeout: 5000 });
 * console.log(up.attempts); // 1
 * ```
 */
export async function waitForPort(options: WaitOptions): Promise<WaitResult> {
  const target = {
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port,
  };
  if (
    !Number.isInteger(target.port) || target.port < 1 || target.port > 65535
  ) {
    throw new RangeError(
      `Cannot wait for port "${target.port}": expected 1 to 65535`,
    );
  }
  const timeout = options.timeout ?? 30_000;
  if (!(timeout > 0)) {
    throw new RangeError(
      `Cannot use timeout "${timeout}": expected ms above 0`,
    );
  }
  const start = performance.now();
  const deadline = start + timeout;
  let delay = WAIT_FIRST_DELAY;
  let last: CheckResult | undefined;
  for (let attempt = 1;; attempt++) {
    const remaining = deadline - performance.now();
    const result = await checkPort(target, {
      timeout: Math.max(1, Math.min(remaining, WAIT_ATTEMPT_LIMIT)),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (result.status === "open") {
      return {
        ...target,
        attempts: attempt,
        elapsedMs: performance.now() - start,
      };
    }
    last = result;
    options.onAttempt?.({ attempt, result });
    const left = deadline - performance.now();
    if (left <= 0) {
      throw new Deno.errors.TimedOut(
        `Nothing accepted connections on ${formatAddr(target)} within ` +
          `${timeout / 1000} s (${attempt} attempt${
            attempt === 1 ? "" : "s"
          }, ` +
          `last: ${last.reason ?? last.status})`,
      );
    }
    await sleep(Math.min(delay, left), options.signal);
    options.signal?.throwIfAborted();
    delay = Math.min(delay * 2, WAIT_MAX_DELAY);
  }
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

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
  const tty = !options.json && Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
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
          Deno.stderr.writeSync(encoder.encode(
            `\r\x1b[K${elapsed.toFixed(1)} s of ${options.timeout / 1000} s, ` +
              `${attempt} attempts, last: ${result.reason ?? result.status}`,
          ));
        }
      },
    });
    if (tty && up.attempts > 2) {
      Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
    }
    console.log(
      options.json
        ? JSON.stringify({ ...up, up: true })
        : `${where} accepts connections (after ${
          (up.elapsedMs / 1000).toFixed(2)
        } s, ${up.attempts} attempt${up.attempts === 1 ? "" : "s"})`,
    );
    return 0;
  } catch (error) {
    if (tty) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
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
    const width = (i: number) => Math.max(...rows.map((row) => row[i]!.length));
    const [w0, w1] = [width(0), width(1)];
    for (const [where, status, ms] of rows) {
      console.log(`${where!.padEnd(w0)}  ${status!.padEnd(w1)}  ${ms}`);
    }
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
