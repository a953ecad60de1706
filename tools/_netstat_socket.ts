/**
 * What netstat's listing is made of, whichever source it came from: a
 * socket entry (protocol, both ends, state, queues, owners) and the names
 * of the kernel's states, with the other systems' names mapped to them.
 *
 * Private to tools/netstat.ts, which re-exports what is public.
 *
 * @module
 */

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
export const STATE_ALIASES: Record<string, string> = {
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
