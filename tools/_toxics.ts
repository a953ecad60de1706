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
  /**
   * For a stage that takes a chunk and passes it on later (a queue): while
   * it still holds chunks, a promise of when it holds none. A removed stage
   * stays linked till then, so that nothing newer passes it.
   */
  idle?(): Promise<void> | undefined;
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
  /**
   * Fails the connection with an error a stage met after its write had
   * resolved (a queued write of `latency`): logged, both sides closed.
   */
  fail(error: unknown): void;
  /**
   * Aborts when this stage is taken out of the chain (its toxic removed on
   * a live connection) or the connection closes: the stage then passes on
   * what it holds at once and lets everything through.
   */
  interrupt: AbortSignal;
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

/** Bytes through one toxic, over every connection it was applied to. */
export interface ToxicTally {
  /** Bytes given to the toxic. */
  bytesIn: number;
  /** Bytes it passed on (fewer when it drops: hang, timeout, limit_data). */
  bytesOut: number;
}

/** What a chain of one connection shares with its relay. */
export interface ChainContext
  extends Omit<Link, "next" | "interrupt" | "fail"> {
  /** See {@linkcode Link.fail}. */
  fail?: (error: unknown) => void;
  /** The tally of a toxic, counted by the chain; none when absent. */
  tally?: (toxic: Required<ToxicSpec>) => ToxicTally;
  /** Called after every count of a tally: a watch of the counters. */
  counted?: () => void;
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
 * The most bytes one `latency` toxic holds for one connection: a stream
 * keeps its rate up to this much per latency period (1 MiB at 100 ms is
 * 10 MiB/s), and a connection holds at most this more than the relay's
 * buffers.
 */
export const LATENCY_QUEUE_BYTES = 1024 * 1024;

/**
 * `latency`: every chunk waits `latency` ms, plus or minus up to `jitter`
 * ms (uniform), before it is passed on. As in toxiproxy, chunks keep their
 * order and are stamped when they come, so the delay does not cut the
 * rate: a chunk is copied into a queue with the time it is due (the
 * relay's buffer is reused at once) and a drain passes each on when due;
 * the queue is bounded ({@linkcode LATENCY_QUEUE_BYTES}), past it a write
 * waits for room and so the relay stops reading. A chunk with nothing
 * before it and no delay goes straight on, uncopied.
 */
const latency: ToxicType = {
  attributes: { latency: 0, jitter: 0 },
  pipe(settings, link) {
    const queue: { chunk: Uint8Array; due: number }[] = [];
    let first = 0; // queue[first] is the next to go; reset when empty
    let queued = 0; // bytes in the queue
    let lastDue = 0; // jitter never reorders: a chunk is due no earlier
    let draining: Promise<void> | undefined;
    let room: PromiseWithResolvers<void> | undefined; // a write waiting
    let failure: { error: unknown } | undefined;
    /** Throws what the drain met, for the relay to see. */
    function check(): void {
      if (failure !== undefined) throw failure.error;
    }

    async function drain(): Promise<void> {
      try {
        while (first < queue.length) {
          const head = queue[first]!;
          const wait = head.due - performance.now();
          if (wait > 0) await sleep(wait, link.interrupt);
          if (link.signal.aborted) return;
          await link.next.write(head.chunk);
          queue[first++] = undefined!;
          queued -= head.chunk.length;
          if (first === queue.length) queue.length = first = 0;
          room?.resolve();
        }
      } catch (error) {
        failure = { error };
        if (!link.signal.aborted) link.fail(error);
      } finally {
        draining = undefined;
        room?.resolve();
      }
    }

    /** Queues `chunk`, due in `delay` ms; resolves when there is room. */
    async function enqueue(chunk: Uint8Array, delay: number): Promise<void> {
      lastDue = Math.max(performance.now() + delay, lastDue);
      queue.push({ chunk: chunk.slice(), due: lastDue }); // buffer reused
      queued += chunk.length;
      draining ??= drain();
      while (
        queued > LATENCY_QUEUE_BYTES && failure === undefined &&
        !link.signal.aborted
      ) {
        room = Promise.withResolvers();
        await room.promise;
      }
      check();
    }

    return {
      // Not async: a chunk that goes straight on costs no promise of its own.
      write(chunk) {
        check();
        const jitter = settings.jitter!;
        const delay = link.interrupt.aborted ? 0 : settings.latency! +
          (jitter > 0 ? Math.round((link.random() * 2 - 1) * jitter) : 0);
        if (first === queue.length && delay <= 0) {
          return link.next.write(chunk);
        }
        return enqueue(chunk, delay);
      },
      idle: () => draining,
      async end() {
        while (draining !== undefined) await draining;
        check();
        if (!link.signal.aborted) await link.next.end();
      },
    };
  },
};

/**
 * `limit_data`: passes on the first `bytes` bytes of the direction, then
 * closes the connection (both sides), as toxiproxy does, once the stages
 * after it have passed on what they hold.
 */
const limitData: ToxicType = {
  attributes: { bytes: 0 },
  pipe(settings, link) {
    let left = settings.bytes!; // per connection
    return {
      async write(chunk) {
        if (link.interrupt.aborted) return link.next.write(chunk);
        if (left <= 0) return link.cut();
        const part = chunk.length <= left ? chunk : chunk.subarray(0, left);
        await link.next.write(part);
        left -= part.length;
        if (left > 0) return;
        try {
          await link.next.end(); // what later stages hold (latency) goes first
        } finally {
          link.cut();
        }
      },
      end: () => link.next.end(),
    };
  },
};

/**
 * `bandwidth`: at most `rate` KB/s (1 KB = 1000 bytes, as toxiproxy), each
 * chunk cut in pieces of 100 ms worth and each piece passed on when the
 * rate allows; 0 is no limit.
 */
const bandwidth: ToxicType = {
  attributes: { rate: 0 },
  pipe(settings, link) {
    let free = 0; // when the link is free again, performance.now() ms
    return {
      async write(chunk) {
        let rest = chunk;
        while (rest.length > 0) {
          const rate = settings.rate!; // bytes a ms
          if (rate <= 0 || link.interrupt.aborted) break;
          const piece = rest.subarray(0, rate * 100);
          const now = performance.now();
          // A timer that fired late is made up (up to 10 ms of it), so a
          // busy machine does not slow the rate; an idle link bursts no more.
          free = Math.max(free, now - 10) + piece.length / rate;
          await sleep(free - now, link.interrupt);
          if (link.signal.aborted) return;
          await link.next.write(piece);
          rest = rest.subarray(piece.length);
        }
        if (rest.length > 0) await link.next.write(rest);
      },
      end: () => link.next.end(),
    };
  },
};

/** `slow_close`: the end (FIN) waits `delay` ms; data passes as it comes. */
const slowClose: ToxicType = {
  attributes: { delay: 0 },
  pipe(settings, link) {
    return {
      write: (chunk) => link.next.write(chunk),
      async end() {
        await sleep(settings.delay!, link.interrupt);
        if (!link.signal.aborted) await link.next.end();
      },
    };
  },
};

/**
 * `timeout`: passes no data (dropped, as toxiproxy) and closes the
 * connection `timeout` ms after the toxic starts; 0 never closes it. An
 * end from the input is passed on, as toxiproxy.
 */
const timeout: ToxicType = {
  attributes: { timeout: 0 },
  pipe(settings, link) {
    if (settings.timeout! > 0) {
      sleep(settings.timeout!, link.interrupt).then(() => {
        if (!link.interrupt.aborted) link.cut();
      });
    }
    return {
      async write(chunk) {
        if (link.interrupt.aborted) await link.next.write(chunk);
      },
      end: () => link.next.end(),
    };
  },
};

/**
 * `reset_peer`: at the first chunk (dropped), waits `timeout` ms holding
 * the relay, then closes the connection. Toxiproxy sets SO_LINGER 0 for a
 * bare RST; Deno cannot, and its close() sends a FIN first, so the peer
 * reads EOF, then gets the RST (EPIPE or ECONNRESET on its next write) when
 * it had sent bytes the proxy had not read (the relay stops reading while
 * the toxic waits).
 */
const resetPeer: ToxicType = {
  attributes: { timeout: 0 },
  pipe(settings, link) {
    return {
      async write(chunk) {
        if (link.interrupt.aborted) return link.next.write(chunk);
        await sleep(settings.timeout!, link.interrupt);
        if (link.interrupt.aborted) return link.next.write(chunk);
        link.cut();
      },
      end: () => link.next.end(),
    };
  },
};

/**
 * `slicer`: cuts each chunk in slices of about `average_size` bytes, plus
 * or minus up to `size_variation`, by toxiproxy's halving, with `delay` µs
 * between slices.
 */
const slicer: ToxicType = {
  attributes: { average_size: 0, size_variation: 0, delay: 0 },
  pipe(settings, link) {
    /**
     * Toxiproxy's chunk(): pushes onto `at` the cut points after `start` up
     * to `end` (one array a chunk, not two a level).
     */
    function cuts(start: number, end: number, at: number[]): void {
      const average = settings.average_size!;
      const variation = settings.size_variation!;
      if (end - start < average + variation || end - start <= 1) {
        at.push(end);
        return;
      }
      let mid = start + Math.floor((end - start) / 2);
      if (variation > 0) {
        mid += Math.floor(link.random() * variation * 2) - variation;
        mid = Math.min(end - 1, Math.max(start + 1, mid));
      }
      cuts(start, mid, at);
      cuts(mid, end, at);
    }
    return {
      async write(chunk) {
        if (settings.average_size! <= 0 || link.interrupt.aborted) {
          return link.next.write(chunk);
        }
        const at = [0];
        cuts(0, chunk.length, at);
        for (let i = 1; i < at.length; i++) {
          if (link.interrupt.aborted) {
            return link.next.write(chunk.subarray(at[i - 1]!));
          }
          await link.next.write(chunk.subarray(at[i - 1]!, at[i]!));
          if (i + 1 < at.length && settings.delay! > 0) {
            await sleep(settings.delay! / 1000, link.interrupt);
          }
        }
      },
      end: () => link.next.end(),
    };
  },
};

/**
 * `hang` (beyond toxiproxy, its #149): the connection stays open and the
 * direction goes silent: data and the end are dropped, as a cable pulled.
 */
const hang: ToxicType = {
  attributes: {},
  pipe(_settings, link) {
    let ended = false; // an end swallowed goes on if the toxic is removed
    link.interrupt.addEventListener("abort", () => {
      if (ended && !link.signal.aborted) link.next.end().catch(() => {});
    }, { once: true });
    return {
      async write(chunk) {
        if (link.interrupt.aborted) await link.next.write(chunk);
      },
      async end() {
        if (link.interrupt.aborted) await link.next.end();
        else ended = true;
      },
    };
  },
};

/** Every toxic by toxiproxy's type name: adding one is one line here. */
export const TOXIC_TYPES: Readonly<Record<string, ToxicType>> = {
  latency,
  bandwidth,
  "slow_close": slowClose,
  timeout,
  "reset_peer": resetPeer,
  slicer,
  "limit_data": limitData,
  hang,
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
 * The chain of one direction of one connection: each toxic on its stream
 * that the connection gets (by its toxicity, one draw per toxic when it is
 * first seen), in order, ending in the sink. {@linkcode Chain.update} swaps
 * toxics on the live connection: a toxic that stays keeps its stage and its
 * state, a removed one is interrupted and passes on what it holds (to the
 * stage after it), a new one is drawn for and linked in. The relay writes
 * to {@linkcode Chain.head} afresh for every chunk.
 */
export class Chain {
  /** Where the relay writes the next chunk. */
  head: Stage;
  /** The last stage, the destination: `head` is it when there are no toxics. */
  readonly sink: Stage;
  readonly #stream: ToxicStream;
  readonly #context: ChainContext;
  readonly #stages = new Map<
    Required<ToxicSpec>,
    {
      stage: Stage;
      forward: { next: Stage };
      stop: AbortController;
      idle?: Promise<void>; // removed, and still passing on what it holds
    }
  >();
  readonly #skipped = new Set<Required<ToxicSpec>>();
  /** The toxics linked now, in chain order (removed ones still draining). */
  #order: Required<ToxicSpec>[] = [];
  /** What the last update asked for: relinked again once a stage drains. */
  #latest: readonly Required<ToxicSpec>[] = [];

  /** A chain of no toxics yet; `update` puts them in. */
  constructor(
    stream: ToxicStream,
    sink: Stage,
    context: ChainContext,
  ) {
    this.#stream = stream;
    this.sink = sink;
    this.#context = context;
    this.head = sink;
  }

  /**
   * Makes the chain the toxics of `toxics` on this stream, in order.
   * Returns the names of the toxics newly applied to this connection.
   */
  update(toxics: readonly Required<ToxicSpec>[]): string[] {
    this.#latest = toxics;
    const mine = toxics.filter((t) => t.stream === this.#stream);
    const applied: string[] = [];
    for (const toxic of mine) {
      if (this.#stages.has(toxic) || this.#skipped.has(toxic)) continue;
      const p = toxic.toxicity;
      if (p >= 1 || (p > 0 && this.#context.random() < p)) {
        const stop = new AbortController();
        const forward = { next: this.sink }; // relinked by later updates
        const tally = this.#context.tally?.(toxic);
        const { random, cut, signal } = this.#context;
        const counted = this.#context.counted ?? (() => {});
        const link: Link = {
          random,
          cut,
          signal,
          fail: this.#context.fail ?? cut,
          next: tally === undefined ? forwarding(forward) : {
            write(chunk) {
              tally.bytesOut += chunk.length;
              counted();
              return forward.next.write(chunk);
            },
            end: () => forward.next.end(),
          },
          interrupt: AbortSignal.any([signal, stop.signal]),
        };
        const piped = TOXIC_TYPES[toxic.type]!.pipe(toxic.attributes, link);
        const stage: Stage = tally === undefined ? piped : {
          write(chunk) {
            tally.bytesIn += chunk.length;
            counted();
            return piped.write(chunk);
          },
          end: () => piped.end(),
          idle: () => piped.idle?.(),
        };
        this.#stages.set(toxic, { stage, forward, stop });
        applied.push(toxic.name);
      } else this.#skipped.add(toxic);
    }
    const kept = new Set(mine);
    for (const [toxic, entry] of this.#stages) {
      if (kept.has(toxic)) continue;
      entry.stop.abort(); // interrupted: it passes on what it holds at once
      if (entry.idle !== undefined) continue; // still draining
      const idle = entry.stage.idle?.();
      if (idle === undefined) {
        this.#stages.delete(toxic); // its forward stays: a chunk held goes on
        continue;
      }
      // Queued chunks: it stays linked till they are gone, then the chain
      // is relinked without it.
      entry.idle = idle.finally(() => {
        entry.idle = undefined;
        this.update(this.#latest);
      });
    }
    for (const toxic of this.#skipped) {
      if (!kept.has(toxic)) this.#skipped.delete(toxic);
    }
    // Chain order: the linked ones as they were (a toxic added goes last),
    // then the new ones.
    const linked = new Set(this.#order);
    this.#order = [
      ...this.#order.filter((t) => this.#stages.has(t)),
      ...mine.filter((t) => this.#stages.has(t) && !linked.has(t)),
    ];
    let head = this.sink;
    for (const toxic of this.#order.toReversed()) {
      const entry = this.#stages.get(toxic)!;
      entry.forward.next = head;
      head = entry.stage;
    }
    this.head = head;
    return applied;
  }
}

/** A stage that passes everything to whatever `forward.next` is now. */
function forwarding(forward: { next: Stage }): Stage {
  return {
    write: (chunk) => forward.next.write(chunk),
    end: () => forward.next.end(),
  };
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
