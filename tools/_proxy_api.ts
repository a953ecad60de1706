/**
 * Toxiproxy's HTTP API for tools/proxy.ts (Shopify/toxiproxy api.go): the
 * same routes, JSON field names, defaults and status codes, so that its
 * clients drive these proxies unchanged. Each proxy is a
 * {@linkcode serveProxy}; errors are `{"error": MESSAGE, "status": CODE}`.
 *
 * Private to this package.
 *
 * @module
 */

import { type Addr, formatAddr } from "../_net.ts";
import { parseTarget } from "./netstat.ts";
import type { ToxicSpec } from "./_toxics.ts";
import { type ProxyServer, serveProxy } from "./_proxy_server.ts";
import { TOXIC_TYPES } from "./_toxics.ts";
import { formatMetrics, METRICS_CONTENT_TYPE } from "./_proxy_metrics.ts";

/** The version `GET /version` reports. */
const API_VERSION = "0.1.0";

/** Options of {@linkcode serveProxyApi}. */
export interface ProxyApiOptions {
  /** Address to serve on. Default 127.0.0.1. */
  hostname?: string;
  /** Port to serve on; 0 picks one. Default 8474, as toxiproxy. */
  port?: number;
  /** Where log lines go. Default `console.error`. */
  log?: (line: string) => void;
  /** Aborting it stops the API and every proxy. */
  signal?: AbortSignal;
}

/** A running API, as {@linkcode serveProxyApi} returns it. */
export interface ProxyApi extends AsyncDisposable {
  /** The address the API is served on. */
  readonly addr: Deno.NetAddr;
  /** The proxy of this name, if there is one. */
  proxy(name: string): ProxyServer | undefined;
  /** The names of the proxies, in creation order. */
  names(): string[];
  /** Stops the API and every proxy. */
  close(): Promise<void>;
}

interface Entry {
  proxy: ProxyServer;
  upstream: string;
}

class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

/** Reads a JSON body, or throws toxiproxy's 400. */
async function jsonBody(request: Request): Promise<unknown> {
  try {
    return await request.json();
  } catch (error) {
    throw new ApiError(
      `bad request body: ${(error as Error).message}`,
      400,
    );
  }
}

/** Reads a JSON object body, or throws toxiproxy's 400. */
async function body(request: Request): Promise<Record<string, unknown>> {
  const value = await jsonBody(request);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ApiError("bad request body: expected a JSON object", 400);
  }
  return value as Record<string, unknown>;
}

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json;charset=utf-8" },
  });
}

/**
 * Serves toxiproxy's REST API: `GET /version`, `GET /metrics` (Prometheus
 * text), `GET/POST /proxies`, `POST
 * /populate`, `GET/POST/PATCH/DELETE /proxies/{name}`, `GET/POST
 * /proxies/{name}/toxics`, `GET/POST/PATCH/DELETE
 * /proxies/{name}/toxics/{toxic}`, `POST /reset`.
 *
 * @param options Where to serve it.
 * @returns The running API; `close()` stops it and every proxy.
 */
export async function serveProxyApi(
  options: ProxyApiOptions = {},
): Promise<ProxyApi> {
  const log = options.log ?? ((line) => console.error(line));
  const entries = new Map<string, Entry>();

  /** A proxy's JSON: toxiproxy's fields, and `stats` beside them. */
  function shape(name: string, entry: Entry) {
    return {
      name,
      listen: formatAddr(entry.proxy.addr as Addr),
      upstream: entry.upstream,
      enabled: entry.proxy.enabled,
      toxics: entry.proxy.toxics(),
      stats: entry.proxy.stats(),
    };
  }

  function find(name: string): Entry {
    const entry = entries.get(name);
    if (entry === undefined) throw new ApiError("proxy not found", 404);
    return entry;
  }

  async function create(
    input: Record<string, unknown>,
    toxics: ToxicSpec[] = [],
  ): Promise<Entry> {
    for (const field of ["name", "upstream"]) {
      if (typeof input[field] !== "string" || input[field] === "") {
        throw new ApiError(`missing required field: ${field}`, 400);
      }
    }
    const listenText = input.listen ?? "127.0.0.1:0";
    if (typeof listenText !== "string") {
      throw new ApiError("bad request body: listen must be a string", 400);
    }
    if (input.enabled !== undefined && typeof input.enabled !== "boolean") {
      throw new ApiError("bad request body: enabled must be a boolean", 400);
    }
    let listen, upstream;
    try {
      listen = parseTarget(listenText, "listen", true);
      upstream = parseTarget(input.upstream as string, "upstream");
    } catch (error) {
      throw new ApiError((error as Error).message, 400);
    }
    let proxy: ProxyServer;
    try {
      proxy = await serveProxy({ ...listen, upstream, toxics, log });
    } catch (error) {
      throw new ApiError((error as Error).message, 500);
    }
    if (input.enabled === false) await proxy.setEnabled(false);
    return { proxy, upstream: input.upstream as string };
  }

  function toxicError(error: unknown): never {
    const message = (error as Error).message;
    if (message.startsWith("Unknown toxic type")) {
      throw new ApiError(`invalid toxic type: ${message}`, 400);
    }
    if (message.startsWith("Cannot use stream")) {
      throw new ApiError(
        "stream was invalid, can be either upstream or downstream",
        400,
      );
    }
    if (message.endsWith("already exists")) {
      throw new ApiError("toxic already exists", 409);
    }
    throw new ApiError(message, 400);
  }

  /** A toxic's JSON as toxiproxy takes it, checked for field types. */
  function toxicInput(input: Record<string, unknown>): ToxicSpec {
    if (typeof input.type !== "string") {
      throw new ApiError("missing required field: type", 400);
    }
    if (!(input.type in TOXIC_TYPES)) {
      throw new ApiError(`invalid toxic type: ${input.type}`, 400);
    }
    return {
      type: input.type,
      ...(typeof input.name === "string" && input.name !== ""
        ? { name: input.name }
        : {}),
      ...(input.stream === undefined || input.stream === ""
        ? {}
        : { stream: input.stream as ToxicSpec["stream"] }),
      ...(input.toxicity === undefined
        ? {}
        : { toxicity: input.toxicity as number }),
      attributes: (input.attributes ?? {}) as Record<string, number>,
    };
  }

  async function route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const parts = url.pathname.split("/").filter((p) => p !== "")
      .map(decodeURIComponent);
    const method = request.method === "PATCH" ? "POST" : request.method;
    const [top, name, sub, toxicName, ...extra] = parts;
    if (extra.length > 0) throw new ApiError("not found", 404);
    if (top === "version" && parts.length === 1 && method === "GET") {
      return json({ version: API_VERSION });
    }
    if (top === "metrics" && parts.length === 1 && method === "GET") {
      const text = formatMetrics([...entries].map(([key, entry]) => ({
        name: key,
        listen: formatAddr(entry.proxy.addr as Addr),
        upstream: entry.upstream,
        enabled: entry.proxy.enabled,
        stats: entry.proxy.stats(),
      })));
      return new Response(text, {
        headers: { "content-type": METRICS_CONTENT_TYPE },
      });
    }
    if (top === "reset" && parts.length === 1 && method === "POST") {
      for (const { proxy } of entries.values()) {
        await proxy.setEnabled(true);
        for (const toxic of proxy.toxics()) proxy.removeToxic(toxic.name);
      }
      return new Response(null, { status: 204 });
    }
    if (top === "populate" && parts.length === 1 && method === "POST") {
      const list = await jsonBody(request);
      if (!Array.isArray(list)) {
        throw new ApiError("bad request body: expected an array", 400);
      }
      const made = [];
      for (const input of list as Record<string, unknown>[]) {
        const old = entries.get(input?.name as string);
        if (old !== undefined) {
          entries.delete(input.name as string);
          await old.proxy.close();
        }
        const entry = await create(input);
        entries.set(input.name as string, entry);
        made.push(shape(input.name as string, entry));
      }
      return json({ proxies: made }, 201);
    }
    if (top !== "proxies") throw new ApiError("not found", 404);
    if (name === undefined) {
      if (method === "GET") {
        return json(Object.fromEntries(
          [...entries].map(([key, entry]) => [key, shape(key, entry)]),
        ));
      }
      if (method === "POST") {
        const input = await body(request);
        if (entries.has(input.name as string)) {
          throw new ApiError("proxy already exists", 409);
        }
        const entry = await create(input);
        if (entries.has(input.name as string)) {
          await entry.proxy.close();
          throw new ApiError("proxy already exists", 409);
        }
        entries.set(input.name as string, entry);
        return json(shape(input.name as string, entry), 201);
      }
      throw new ApiError("method not allowed", 405);
    }
    const entry = find(name);
    if (sub === undefined) {
      if (method === "GET") return json(shape(name, entry));
      if (method === "DELETE") {
        entries.delete(name);
        await entry.proxy.close();
        return new Response(null, { status: 204 });
      }
      if (method === "POST") {
        const input = await body(request);
        const listen = input.listen ?? formatAddr(entry.proxy.addr as Addr);
        const upstream = input.upstream ?? entry.upstream;
        if (
          listen !== formatAddr(entry.proxy.addr as Addr) ||
          upstream !== entry.upstream
        ) {
          const next = await create({
            name,
            listen,
            upstream,
            enabled: input.enabled ?? entry.proxy.enabled,
          }, entry.proxy.toxics());
          await entry.proxy.close();
          entries.set(name, next);
          return json(shape(name, next));
        }
        if (input.enabled !== undefined) {
          if (typeof input.enabled !== "boolean") {
            throw new ApiError(
              "bad request body: enabled must be a boolean",
              400,
            );
          }
          await entry.proxy.setEnabled(input.enabled);
        }
        return json(shape(name, entry));
      }
      throw new ApiError("method not allowed", 405);
    }
    if (sub !== "toxics") throw new ApiError("not found", 404);
    if (toxicName === undefined) {
      if (method === "GET") return json(entry.proxy.toxics());
      if (method === "POST") {
        const spec = toxicInput(await body(request));
        try {
          return json(entry.proxy.addToxic(spec));
        } catch (error) {
          toxicError(error);
        }
      }
      throw new ApiError("method not allowed", 405);
    }
    const toxic = entry.proxy.toxics().find((t) => t.name === toxicName);
    if (toxic === undefined) throw new ApiError("toxic not found", 404);
    if (method === "GET") return json(toxic);
    if (method === "DELETE") {
      entry.proxy.removeToxic(toxicName);
      return new Response(null, { status: 204 });
    }
    if (method === "POST") {
      const input = await body(request);
      try {
        return json(entry.proxy.updateToxic(toxicName, {
          ...(input.toxicity === undefined
            ? {}
            : { toxicity: input.toxicity as number }),
          attributes: (input.attributes ?? {}) as Record<string, number>,
        }));
      } catch (error) {
        toxicError(error);
      }
    }
    throw new ApiError("method not allowed", 405);
  }

  const stopped = new AbortController();
  const ready = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 8474,
    signal: stopped.signal,
    onListen: (addr) => ready.resolve(addr as Deno.NetAddr),
    onError: (error) => {
      log(`api: ${(error as Error).message}`);
      return json({ error: "internal error", status: 500 }, 500);
    },
  }, async (request) => {
    try {
      return await route(request);
    } catch (error) {
      if (error instanceof ApiError) {
        return json(
          { error: error.message, status: error.status },
          error.status,
        );
      }
      throw error;
    }
  });
  const addr = await ready.promise;
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      stopped.abort();
      await server.finished;
      await Promise.all([...entries.values()].map((e) => e.proxy.close()));
      entries.clear();
    })();
  options.signal?.addEventListener("abort", close, { once: true });
  return {
    addr,
    proxy: (name) => entries.get(name)?.proxy,
    names: () => [...entries.keys()],
    close,
    [Symbol.asyncDispose]: close,
  };
}
