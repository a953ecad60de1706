/**
 * Toxics of the proxy (tools/proxy.ts), after Shopify's toxiproxy: a toxic is
 * one small type, its attributes and one `pipe` function that makes the
 * per-connection stage; stages chain per direction, and the relay knows
 * nothing of any of them. {@linkcode TOXIC_TYPES} maps toxiproxy's type
 * names to the toxics, so adding a toxic is one entry there.
 *
 * A stage takes one chunk at a time and resolves when it may take the next:
 * the relay reads again only then, so a toxic that holds a chunk (latency)
 * holds the relay too, and the bytes a connection holds stay bounded. A
 * stage passes on everything it does not mean to drop ("don't drop any data
 * on the floor").
 *
 * Private to this package.
 *
 * @module
 */

import { sleep } from "../_cli.ts";

/** The direction a toxic acts on: toxiproxy's names. */
export type ToxicStream = "upstream" | "downstream";

/** Where a stage passes what it lets through: the next stage, or the socket. */
export interface Stage {
  /**
   * Takes one chunk (a view of the relay's buffer: done with it once the
   * promise resolves) and resolves when the next may come.
   */
  write(chunk: Uint8Array): Promise<void>;
  /** The input has ended (EOF): pass the end on. */
  end(): Promise<void>;
}

/** What a stage of one connection may use beside the next stage. */
export interface Link {
  /** The next stage: the next toxic, or the writer to the socket. */
  next: Stage;
  /** This connection's random numbers in [0, 1) (`--seed` makes them repeat). */
  random: () => number;
  /** Closes the whole connection now, both sides (limit_data). */
  cut(): void;
  /** Aborts when the connection closes: a waiting stage stops waiting. */
  signal: AbortSignal;
}

/** A toxic as configured: type, direction, probability, attributes. */
export interface ToxicSpec {
  /** The type name, as toxiproxy's API has it (`latency`, `limit_data`). */
  type: string;
  /** Name of this toxic; default `TYPE_STREAM`, as toxiproxy. */
  name?: string;
  /** The direction; default `downstream`. */
  stream?: ToxicStream;
  /** Probability that a connection gets it, 0 to 1; default 1. */
  toxicity?: number;
  /** The type's attributes (numbers), as toxiproxy's JSON has them. */
  attributes?: Record<string, number>;
}

/** One kind of toxic: its attributes and its pipe. */
export interface ToxicType {
  /** Attribute names and their defaults. */
  readonly attributes: Readonly<Record<string, number>>;
  /**
   * Makes the stage of one connection (fresh per-connection state lives in
   * the closure) from the settings, which all connections share.
   */
  pipe(settings: Readonly<Record<string, number>>, link: Link): Stage;
}

/**
 * `latency`: every chunk waits `latency` ms, plus or minus up to `jitter`
 * ms (uniform), before it is passed on. As in toxiproxy, chunks keep their
 * order.
 */
const latency: ToxicType = {
  attributes: { latency: 0, jitter: 0 },
  pipe(settings, link) {
    return {
      async write(chunk) {
        const jitter = settings.jitter!;
        const delay = settings.latency! +
          (jitter > 0 ? Math.round((link.random() * 2 - 1) * jitter) : 0);
        if (delay > 0) await sleep(delay, link.signal);
        if (link.signal.aborted) return;
        await link.next.write(chunk);
      },
      end: () => link.next.end(),
    };
  },
};

/**
 * `limit_data`: passes on the first `bytes` bytes of the direction, then
 * closes the connection (both sides), as toxiproxy does.
 */
const limitData: ToxicType = {
  attributes: { bytes: 0 },
  pipe(settings, link) {
    let left = settings.bytes!; // per connection
    return {
      async write(chunk) {
        if (left <= 0) return link.cut();
        const part = chunk.length <= left ? chunk : chunk.subarray(0, left);
        await link.next.write(part);
        left -= part.length;
        if (left <= 0) link.cut();
      },
      end: () => link.next.end(),
    };
  },
};

/** Every toxic by toxiproxy's type name: adding one is one line here. */
export const TOXIC_TYPES: Readonly<Record<string, ToxicType>> = {
  latency,
  "limit_data": limitData,
};

/**
 * A toxic checked against its type: every field filled in.
 *
 * @throws {RangeError} On an unknown type or attribute, a stream that is
 * not `upstream` or `downstream`, a toxicity outside 0 to 1, or an
 * attribute that is not a whole number of at least 0.
 */
export function resolveToxic(spec: ToxicSpec): Required<ToxicSpec> {
  const type = TOXIC_TYPES[spec.type];
  if (type === undefined) {
    throw new RangeError(
      `Unknown toxic type "${spec.type}": expected one of ${
        Object.keys(TOXIC_TYPES).join(", ")
      }`,
    );
  }
  const stream = spec.stream ?? "downstream";
  if (stream !== "upstream" && stream !== "downstream") {
    throw new RangeError(
      `Cannot use stream "${stream}": expected upstream or downstream`,
    );
  }
  const toxicity = spec.toxicity ?? 1;
  if (!(toxicity >= 0 && toxicity <= 1)) {
    throw new RangeError(
      `Cannot use toxicity "${toxicity}": expected 0 to 1`,
    );
  }
  const attributes: Record<string, number> = { ...type.attributes };
  for (const [key, value] of Object.entries(spec.attributes ?? {})) {
    if (!(key in type.attributes)) {
      throw new RangeError(
        `Unknown attribute "${key}" of ${spec.type}: expected ${
          Object.keys(type.attributes).join(", ")
        }`,
      );
    }
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `Cannot use ${spec.type} ${key} "${value}": expected a whole number of at least 0`,
      );
    }
    attributes[key] = value;
  }
  return {
    type: spec.type,
    name: spec.name ?? `${spec.type}_${stream}`,
    stream,
    toxicity,
    attributes,
  };
}

/**
 * Parses one `--toxic`: `TYPE[:KEY=VALUE,...]`, the keys a type's attributes
 * or `stream`, `toxicity`, `name`; as `latency:latency=100,jitter=10`.
 *
 * @throws {RangeError} On a malformed text or what {@linkcode resolveToxic}
 * refuses.
 */
export function parseToxic(text: string): Required<ToxicSpec> {
  const colon = text.indexOf(":");
  const type = colon < 0 ? text : text.slice(0, colon);
  const spec: ToxicSpec = { type, attributes: {} };
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  for (const pair of rest === "" ? [] : rest.split(",")) {
    const eq = pair.indexOf("=");
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (eq < 0 || key === "" || value === "") {
      throw new RangeError(
        `Cannot parse "${pair}": expected KEY=VALUE, as latency=100`,
      );
    }
    if (key === "stream") spec.stream = value as ToxicStream;
    else if (key === "name") spec.name = value;
    else if (key === "toxicity") {
      spec.toxicity = /^(\d+(\.\d*)?|\.\d+)$/.test(value) ? Number(value) : NaN;
    } else {
      spec.attributes![key] = /^\d+$/.test(value) ? Number(value) : NaN;
    }
  }
  return resolveToxic(spec);
}

/**
 * Builds the chain of one direction of one connection: each toxic on
 * `stream` that the connection gets (by its toxicity, one draw per toxic),
 * in order, ending in `sink`. Returns the head and the names applied.
 */
export function buildChain(
  toxics: readonly Required<ToxicSpec>[],
  stream: ToxicStream,
  sink: Stage,
  context: Omit<Link, "next">,
): { head: Stage; applied: string[] } {
  const chosen = toxics.filter((t) =>
    t.stream === stream &&
    (t.toxicity >= 1 || (t.toxicity > 0 && context.random() < t.toxicity))
  );
  let head = sink;
  for (const toxic of chosen.toReversed()) {
    head = TOXIC_TYPES[toxic.type]!.pipe(toxic.attributes, {
      ...context,
      next: head,
    });
  }
  return { head, applied: chosen.map((t) => t.name) };
}

/**
 * Random numbers in [0, 1) from a 32-bit seed (mulberry32), so that a run
 * with `--seed` repeats its jitter and toxicity draws.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
