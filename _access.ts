/**
 * Access control for every server, as ncat's `--allow` and `--deny`: lists
 * of IPv4 and IPv6 addresses and CIDR prefixes, comma-separated. Addresses
 * are compared as 128-bit numbers, an IPv4 address as its IPv4-mapped IPv6
 * form (`::ffff:a.b.c.d`), so an IPv4-mapped IPv6 peer of a dual-stack
 * listener matches its IPv4 entry and the other way round.
 *
 * Private to this package.
 *
 * @module
 */

import { UsageError } from "./_cli.ts";

/** One prefix: the first `bits` bits of `base` (a 128-bit address). */
interface Prefix {
  /** The address, with the bits past the prefix cleared. */
  readonly base: bigint;
  /** Length of the prefix in bits, 0 to 128. */
  readonly bits: number;
}

const ALL_BITS = (1n << 128n) - 1n;
/** `::ffff:0:0/96`, where IPv4 addresses live in IPv6. */
const V4_MAPPED = 0xffffn << 32n;

/** Parses dotted IPv4 (`192.0.2.1`) into its number, or undefined. */
function parseIPv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0n;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    if (part.length > 1 && part.startsWith("0")) return undefined; // octal?
    n = (n << 8n) | BigInt(part);
  }
  return n;
}

/** Parses IPv6 text (`::`, an embedded IPv4 tail, a `%zone`) or undefined. */
function parseIPv6(text: string): bigint | undefined {
  const bare = text.replace(/%[\w.-]+$/, "");
  const halves = bare.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const fields = half.split(":");
    for (const [i, field] of fields.entries()) {
      if (i === fields.length - 1 && field.includes(".")) {
        const v4 = parseIPv4(field);
        if (v4 === undefined) return undefined;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-f]{1,4}$/i.test(field)) {
        out.push(parseInt(field, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  let n = 0n;
  for (const g of [...head, ...Array(missing).fill(0), ...tail]) {
    n = (n << 16n) | BigInt(g);
  }
  return n;
}

/**
 * An IP address (IPv4, IPv6, or IPv6 in brackets) as a 128-bit number, IPv4
 * in its mapped form; undefined if `text` is not one.
 */
export function parseAddress(text: string): bigint | undefined {
  const bare = text.replace(/^\[(.*)\]$/, "$1");
  const v4 = parseIPv4(bare);
  if (v4 !== undefined) return V4_MAPPED | v4;
  return bare.includes(":") ? parseIPv6(bare) : undefined;
}

/** A list of addresses and prefixes, as `--allow` and `--deny` take. */
export class AccessList {
  /** The entries, as given (for messages). */
  readonly text: string;
  /** The prefixes. */
  readonly #prefixes: Prefix[];

  private constructor(text: string, prefixes: Prefix[]) {
    this.text = text;
    this.#prefixes = prefixes;
  }

  /**
   * Parses a comma-separated list of addresses and CIDR prefixes
   * (`10.0.0.0/8,::1,2001:db8::/32`); `option` names it in errors.
   *
   * @throws {UsageError} Quoting the first entry that is not one.
   *
   * @example
   * ```ts
   * import { AccessList } from "./_access.ts";
   *
   * const list = AccessList.parse("10.0.0.0/8,::1", "--allow");
   * console.log(list.has("10.1.2.3"), list.has("::ffff:10.9.9.9")); // true true
   * ```
   */
  static parse(text: string, option: string): AccessList {
    const prefixes: Prefix[] = [];
    for (const raw of text.split(",")) {
      const entry = raw.trim();
      const [address = "", length, extra] = entry.split("/");
      const n = parseAddress(address);
      const v4 = n !== undefined && parseIPv4(address) !== undefined;
      const max = v4 ? 32 : 128;
      const bits = length === undefined
        ? max
        : /^\d{1,3}$/.test(length)
        ? Number(length)
        : NaN;
      if (n === undefined || extra !== undefined || !(bits <= max)) {
        throw new UsageError(
          `Cannot parse ${option} entry "${entry}": expected an IPv4 or ` +
            `IPv6 address or CIDR prefix (as 10.0.0.0/8 or 2001:db8::/32), ` +
            `comma-separated`,
        );
      }
      const total = v4 ? bits + 96 : bits;
      const mask = total === 0
        ? 0n
        : (ALL_BITS << BigInt(128 - total)) & ALL_BITS;
      prefixes.push({ base: n & mask, bits: total });
    }
    return new AccessList(text, prefixes);
  }

  /** Whether `address` (IP text, as `NetAddr.hostname`) is in the list. */
  has(address: string): boolean {
    const n = parseAddress(address);
    if (n === undefined) return false;
    for (const { base, bits } of this.#prefixes) {
      const mask = bits === 0
        ? 0n
        : (ALL_BITS << BigInt(128 - bits)) & ALL_BITS;
      if ((n & mask) === base) return true;
    }
    return false;
  }
}

/**
 * Who may connect: with `allow`, only the addresses in it; never those in
 * `deny` (ncat's `--allow` and `--deny`; both together admit an address in
 * `allow` and not in `deny`).
 */
export interface AccessControl {
  /** Only these may connect. */
  allow?: AccessList;
  /** These may not connect. */
  deny?: AccessList;
}

/** Whether `access` admits a peer at `address` (an IP, as `NetAddr.hostname`). */
export function admits(access: AccessControl, address: string): boolean {
  if (access.allow !== undefined && !access.allow.has(address)) return false;
  return access.deny === undefined || !access.deny.has(address);
}
