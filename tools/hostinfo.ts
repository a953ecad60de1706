#!/usr/bin/env -S deno run --allow-net --allow-sys=hostname,networkInterfaces
/**
 * The notes' "Get IP address of local machine" (`gethostname`,
 * `gethostbyname`): the host's name, the addresses that name resolves to
 * through the system resolver (the path `gethostbyname` takes, `/etc/hosts`
 * included), and every interface address. Given a name it resolves that
 * instead; given an address it lists it as itself and reverse-resolves it
 * (`gethostbyaddr`).
 *
 * Requires `--allow-sys=hostname,networkInterfaces` and `--allow-net` (for
 * the names it resolves).
 *
 * @module
 */

import { isIP } from "node:net";
import { lookup, lookupService } from "node:dns/promises";
import {
  type CommandSpec,
  describeError,
  parseCommandLine,
  parseHost,
  runMain,
  UsageError,
} from "../_cli.ts";
import { alignColumns } from "../_format.ts";
import { bareHost } from "../_net.ts";

/** One address of a network interface. */
export interface InterfaceAddress {
  /** Interface name, as `lo` or `eth0`. */
  name: string;
  /** `IPv4` or `IPv6`. */
  family: "IPv4" | "IPv6";
  /** The address with its prefix length, as `127.0.0.1/8`. */
  cidr: string;
  /** The address alone. */
  address: string;
  /** Whether it is a loopback address (127.0.0.0/8 or ::1). */
  loopback: boolean;
}

/** What {@linkcode hostInfo} finds. */
export interface HostInfo {
  /** The host name (`gethostname`). */
  hostname: string;
  /** The name that was resolved: the host name, or the one asked for. */
  query: string;
  /**
   * Addresses `query` resolves to, in resolver order (`gethostbyname`); an
   * address asked for is listed as itself.
   */
  addresses: { address: string; family: "IPv4" | "IPv6" }[];
  /**
   * When an address was asked for: the name it resolves back to
   * (`gethostbyaddr`), or `null` if it has none.
   */
  reverse?: string | null;
  /**
   * Why `query` did not resolve (for an address: reverse-resolve), if it
   * did not.
   */
  error?: string;
  /** Every interface address. */
  interfaces: InterfaceAddress[];
}

/**
 * Whether `address` is a loopback address: IPv4 127.0.0.0/8, IPv6 ::1, or
 * 127.0.0.0/8 mapped into IPv6, in any spelling IPv6 allows.
 */
export function isLoopback(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return address.startsWith("127.");
  if (family !== 6) return false;
  // The WHATWG URL parser writes IPv6 in its one canonical (RFC 5952) form:
  // 0:0:0:0:0:0:0:1 as ::1, ::FFFF:127.0.0.1 as ::ffff:7f00:1. A zone
  // (%eth0) it does not take; it says nothing about loopback.
  const bare = address.replace(/%.*$/, "");
  const canonical = new URL(`http://[${bare}]/`).hostname;
  return canonical === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:/.test(canonical);
}

/**
 * Lists every interface address, marking the loopback ones.
 *
 * Requires `--allow-sys=networkInterfaces`.
 *
 * @returns One entry per address, in the system's order.
 *
 * @example
 * ```ts
 * import { interfaceAddresses } from "./hostinfo.ts";
 *
 * console.log(interfaceAddresses().some((a) => a.loopback)); // true
 * ```
 */
export function interfaceAddresses(): InterfaceAddress[] {
  return Deno.networkInterfaces().map((i) => ({
    name: i.name,
    family: i.family,
    cidr: i.cidr,
    address: i.address,
    loopback: isLoopback(i.address),
  }));
}

/**
 * Gathers the host name, what a name resolves to (the host's own by
 * default), or what an address resolves back to, and the interfaces.
 *
 * Requires `--allow-sys=hostname,networkInterfaces` and `--allow-net`.
 *
 * @param target A name to resolve or an address to reverse-resolve; the
 * host's own name if omitted.
 * @returns What was found; a failed lookup is reported in `error`.
 *
 * @example
 * ```ts
 * import { hostInfo } from "./hostinfo.ts";
 *
 * const info = await hostInfo("localhost");
 * console.log(info.addresses.length > 0); // true
 * ```
 */
export async function hostInfo(target?: string): Promise<HostInfo> {
  const hostname = Deno.hostname();
  const query = target ?? hostname;
  const info: HostInfo = {
    hostname,
    query,
    addresses: [],
    interfaces: interfaceAddresses(),
  };
  const literal = bareHost(query);
  if (isIP(literal)) {
    info.addresses = [{
      address: literal,
      family: isIP(literal) === 6 ? "IPv6" : "IPv4",
    }];
    try {
      // getnameinfo, as gethostbyaddr: /etc/hosts first, then DNS.
      info.reverse = (await lookupService(literal, 0)).hostname;
    } catch (error) {
      if (errorCode(error) === "ENOTFOUND") info.reverse = null;
      else info.error = lookupFailure(error, literal);
    }
  } else {
    try {
      const found = await lookup(literal, { all: true });
      info.addresses = found.map((a) => ({
        address: a.address,
        family: a.family === 6 ? "IPv6" : "IPv4",
      }));
    } catch (error) {
      info.error = lookupFailure(error, literal);
    }
  }
  return info;
}

/** The `code` of a `node:dns` error (`ENOTFOUND`, `EPERM`, ...). */
function errorCode(error: unknown): string | undefined {
  return (error as { code?: string } | undefined)?.code;
}

/** Why looking up `host` failed, as one line a user can act on. */
function lookupFailure(error: unknown, host: string): string {
  const code = errorCode(error);
  if (code === "ENOTFOUND") return "no such host (ENOTFOUND)";
  if (code === "EPERM") {
    // Deno refuses a lookup of a host the --allow-net list does not name.
    const flag = `--allow-net=${isIP(host) === 6 ? `[${host}]` : host}`;
    return `not permitted (EPERM): run with --allow-net or ${flag}`;
  }
  return code ?? describeError(error);
}

/** Renders {@linkcode HostInfo} as the text the command prints. */
export function formatHostInfo(info: HostInfo): string {
  const lines = [`host name: ${info.hostname}`];
  const label = info.query === info.hostname
    ? "resolves to"
    : `${info.query} resolves to`;
  const address = isIP(bareHost(info.query)) !== 0;
  if (info.error && !address) {
    lines.push(`${label}: ${info.error}`);
  } else {
    lines.push(`${label}:`);
    for (const a of info.addresses) {
      lines.push(`  ${a.address}  (${a.family})`);
    }
  }
  if (address) {
    lines.push(
      `${info.query} reverse-resolves to: ${
        info.error ?? info.reverse ?? "no reverse name"
      }`,
    );
  }
  lines.push("interfaces:");
  const rows = info.interfaces.map((i) => [
    i.name,
    i.family,
    i.cidr,
    i.loopback ? "loopback" : "",
  ]);
  for (const line of alignColumns(rows)) lines.push(`  ${line}`.trimEnd());
  return lines.join("\n");
}

const COMMAND: CommandSpec = {
  name: "tools/hostinfo.ts",
  summary:
    "Prints the host name, the addresses it resolves to (gethostbyname, " +
    "/etc/hosts included) and every interface address. Given NAME, " +
    "resolves it; given an ADDRESS, lists it and reverse-resolves it " +
    "(gethostbyaddr).",
  positionals: "[NAME | ADDRESS]",
  options: {
    json: { type: "boolean", description: "Print one JSON object." },
  },
  epilog:
    "Exit status: 0 (an address without a reverse name included), 1 if the\n" +
    "name does not resolve or a lookup is not permitted, 2 on a usage mistake.",
};

/** The command line: gather, print as text or JSON. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  if (parsed.positionals.length > 1) {
    throw new UsageError("Give at most one name or address (see --help)");
  }
  const target = parsed.positionals[0];
  const info = await hostInfo(
    target === undefined ? undefined : parseHost(target, "NAME"),
  );
  console.log(
    parsed.values.json ? JSON.stringify(info, null, 2) : formatHostInfo(info),
  );
  return info.error ? 1 : 0;
}

if (import.meta.main) runMain(main);
