/**
 * The `netstat` source of netstat: the platform's own command run and its
 * output parsed (Linux net-tools, macOS and the BSDs, Windows) into the
 * same socket entries as the `/proc` source.
 *
 * Private to tools/netstat.ts, which re-exports what is public.
 *
 * @module
 */

import { describeError } from "../_cli.ts";
import { bareHost } from "../_net.ts";
import { type Output, runCommand } from "../_process.ts";
import {
  type Endpoint,
  type ProcessInfo,
  type Protocol,
  type SocketEntry,
  STATE_ALIASES,
  UDP_UNCONNECTED,
} from "./_netstat_socket.ts";

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

/** Runs the platform's netstat; its output, or why it could not run. */
export async function runNetstat(): Promise<
  { command: string; stdout: string; stderr: string } | { problem: string }
> {
  const [program, ...args] = netstatCommand(Deno.build.os);
  const command = [program, ...args].join(" ");
  let output: Output;
  try {
    output = await runCommand([program!, ...args]);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      return { problem: `running ${command} needs --allow-run=netstat` };
    }
    if (error instanceof Deno.errors.NotFound) {
      return { problem: "there is no netstat command" };
    }
    return { problem: `cannot run ${command}: ${describeError(error)}` };
  }
  const { stdout, stderr } = output;
  if (output.code !== 0) {
    const first = stderr.trim().split("\n")[0];
    return {
      problem: `${command} exited with ${output.code}${
        first ? `: ${first}` : ""
      }`,
    };
  }
  return { command, stdout, stderr };
}
