/**
 * Test helpers shared by the test files: run a script of the project as a
 * subprocess (with the permissions its task or README gives it), wait for
 * its `listening on` line, read its output line by line.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { writeAll } from "../_net.ts";

/** The project root, as a path. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** Permissions each script is run with in tests: what its README line gives. */
export const SCRIPT_PERMISSIONS: Record<string, string[]> = {
  "servers/sequential.ts": ["--allow-net=127.0.0.1,[::1]"],
  "servers/select_echo.ts": ["--allow-net=127.0.0.1,[::1]"],
  "servers/completion_echo.ts": ["--allow-net=127.0.0.1,[::1]"],
  // The clients read the test certificates (--ca, --cert, --key) from here.
  "clients/client.ts": ["--allow-net", "--allow-read=tests/fixtures/tls"],
  "tools/hostinfo.ts": [
    "--allow-net",
    "--allow-sys=hostname,networkInterfaces",
  ],
  "tools/netstat.ts": ["--allow-run=netstat", "--allow-net=127.0.0.1,[::1]"],
  "tools/load.ts": [
    "--allow-net=127.0.0.1,[::1],localhost",
    "--allow-read=tests/fixtures/tls",
  ],
  "tools/compile.ts": [
    "--allow-read",
    "--allow-env",
    "--allow-run",
    "--allow-write",
  ],
};

/** What a finished subprocess printed. */
export interface Output {
  /** Exit code. */
  code: number;
  /** Everything on stdout. */
  stdout: string;
  /** Everything on stderr. */
  stderr: string;
}

function denoArgs(script: string, args: string[], perms?: string[]) {
  return [
    "run",
    "--quiet",
    ...(perms ?? SCRIPT_PERMISSIONS[script] ?? []),
    script,
    ...args,
  ];
}

/** Runs `script` with `args` to completion. */
export function runScript(
  script: string,
  args: string[],
  options: { perms?: string[]; env?: Record<string, string> } = {},
): Promise<Output> {
  return runDeno(denoArgs(script, args, options.perms), options.env);
}

/** Runs `deno ARGS...` (a task, say) in the project root to completion. */
export async function runDeno(
  args: string[],
  env: Record<string, string> = {},
): Promise<Output> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** A script running in the background, read line by line. */
export class Running implements AsyncDisposable {
  /** The subprocess. */
  readonly child: Deno.ChildProcess;
  /** Lines of stdout seen so far. */
  readonly lines: string[] = [];
  #stdout: AsyncIterator<string>;
  #stderr: Promise<string>;
  #stderrLines: AsyncIterator<string>;
  #done?: Promise<Output>;

  /**
   * Starts `script` with `args`, `perms` (flags) and extra `env`; with
   * `nofile`, under that open-files limit (`ulimit -n`, through `sh`).
   */
  constructor(
    script: string,
    args: string[],
    perms?: string[],
    env: Readonly<Record<string, string>> = {},
    options: { nofile?: number } = {},
  ) {
    const deno = [Deno.execPath(), ...denoArgs(script, args, perms)];
    const argv = options.nofile === undefined
      ? deno
      : ["sh", "-c", `ulimit -n ${options.nofile} && exec "$@"`, "sh", ...deno];
    this.child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      cwd: ROOT,
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdout = this.child.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(lineSplitter())[Symbol.asyncIterator]();
    // One copy for the whole text at the end, one to wait on line by line.
    const [whole, live] = this.child.stderr.tee();
    this.#stderr = new Response(whole).text();
    this.#stderrLines = live
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(lineSplitter())[Symbol.asyncIterator]();
  }

  /** Waits for a stderr line that matches `pattern` and returns it. */
  async waitForStderr(pattern: RegExp): Promise<string> {
    while (true) {
      const next = await this.#stderrLines.next();
      if (next.done) {
        const { code, stderr } = await this.wait();
        throw new Error(
          `Exited (${code}) before printing ${pattern} on stderr: ${stderr}`,
        );
      }
      if (pattern.test(next.value)) return next.value;
    }
  }

  /** Waits for the next stdout line; `null` at the end of the output. */
  async nextLine(): Promise<string | null> {
    const next = await this.#stdout.next();
    if (next.done) return null;
    this.lines.push(next.value);
    return next.value;
  }

  /** Waits for a stdout line that matches `pattern` and returns it. */
  async waitFor(pattern: RegExp): Promise<string> {
    while (true) {
      const line = await this.nextLine();
      if (line === null) {
        const { code, stderr } = await this.wait();
        throw new Error(
          `Exited (${code}) before printing ${pattern}; stderr: ${stderr}`,
        );
      }
      if (pattern.test(line)) return line;
    }
  }

  /** Waits for `listening on HOST:PORT` (the first line) and returns the port. */
  async port(): Promise<number> {
    const line = await this.nextLine();
    const match = line?.match(/^listening on (?:\[[^\]]+\]|[^:]+):(\d+)$/);
    if (!match) {
      const { stderr } = await this.wait();
      throw new Error(`Expected "listening on", got ${line}; ${stderr}`);
    }
    return Number(match[1]);
  }

  /** Waits for the exit; returns the code and the rest of the output. */
  wait(): Promise<Output> {
    this.#done ??= (async () => {
      const rest: string[] = [];
      while (true) {
        const next = await this.#stdout.next();
        if (next.done) break;
        rest.push(next.value);
      }
      this.lines.push(...rest);
      const status = await this.child.status;
      return {
        code: status.code,
        stdout: this.lines.join("\n"),
        stderr: await this.#stderr,
      };
    })();
    return this.#done;
  }

  /** Sends `signal` and waits for the exit. */
  stop(signal: Deno.Signal = "SIGTERM"): Promise<Output> {
    try {
      this.child.kill(signal);
    } catch {
      // already exited
    }
    return this.wait();
  }

  /** Kills the script if it still runs, and waits. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

/** A stream that splits text into lines. */
function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      for (const part of parts) controller.enqueue(part);
    },
    flush(controller) {
      if (rest) controller.enqueue(rest);
    },
  });
}

/** Writes all of `bytes` to `conn` (a write may be partial): the one in _net.ts. */
export { writeAll };

/** Reads from `conn` until the peer ends its data; returns the bytes. */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** Reads from `conn` until a `\n`; returns the text before it. */
export async function readLine(conn: Deno.Conn): Promise<string | null> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  while (true) {
    const n = await conn.read(one);
    if (n === null) {
      return bytes.length
        ? new TextDecoder().decode(new Uint8Array(bytes))
        : null;
    }
    if (one[0] === 10) return new TextDecoder().decode(new Uint8Array(bytes));
    bytes.push(one[0]!);
  }
}

/** Polls `condition` until it holds, failing after `ms` with `what`. */
export async function waitUntil(
  condition: () => boolean,
  what: string,
  ms = 20_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Deterministic pseudo-random numbers (xorshift32), so a failure replays. */
export function pseudoRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** `length` bytes from `next` (see {@linkcode pseudoRandom}). */
export function randomBytes(length: number, next: () => number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = next() & 0xff;
  return bytes;
}

/** Index of the first difference of `a` and `b`, or -1 if they are equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * Connects to an echo server on 127.0.0.1:`port`, sends `data` in chunks of
 * random size (1 to `maxChunk`) while reading, shuts down writing, and
 * returns everything read until the server closes.
 */
export async function echoInChunks(
  port: number,
  data: Uint8Array,
  next: () => number,
  maxChunk: number,
): Promise<Uint8Array> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reading = readAll(conn);
  let at = 0;
  while (at < data.length) {
    const size = 1 + (next() % maxChunk);
    await writeAll(conn, data.subarray(at, at + size));
    at += size;
  }
  await conn.closeWrite();
  return await reading;
}
