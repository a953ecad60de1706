/**
 * The `/proc` source of netstat (Linux): the kernel's socket tables
 * `/proc/net/{tcp,tcp6,udp,udp6}` decoded, and each socket's owner found by
 * its inode under `/proc/PID/fd` and named from `/proc/PID/comm`.
 *
 * Private to tools/netstat.ts, which re-exports what is public.
 *
 * @module
 */

import {
  type Endpoint,
  type ProcessInfo,
  type Protocol,
  PROTOCOLS,
  type SocketEntry,
  TCP_STATES,
  UDP_UNCONNECTED,
} from "./_netstat_socket.ts";

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
