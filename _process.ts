/**
 * A child process read line by line: the one starter of the tests (which run
 * the project's scripts), of the bench (which runs servers and clients) and
 * of the tools that run a program (netstat, prlimit, `deno compile`).
 * It waits for lines by pattern (a server's `listening on` line), keeps its
 * stderr whole for the error message, and stops with a signal, then
 * SIGKILL if the child does not exit in time.
 *
 * Private to this package. Requires `--allow-run` for the command.
 *
 * @module
 */

/** What a finished subprocess printed. */
export interface Output {
  /** Exit code. */
  code: number;
  /** Everything on stdout. */
  stdout: string;
  /** Everything on stderr. */
  stderr: string;
}

/** How {@linkcode Child} starts its command. */
export interface ChildOptions {
  /** Working directory. */
  cwd?: string;
  /** Environment beside the parent's, with NO_COLOR=1. */
  env?: Readonly<Record<string, string>>;
  /** Raise the open-files limit to this first (`ulimit -n`, through `sh`). */
  nofile?: number;
  /**
   * With `nofile`: whether a limit above the hard one fails the start (the
   * tests') or is let be (the bench's: it reports the hard limit itself).
   */
  nofileStrict?: boolean;
  /** Pin to these CPUs (`taskset -c`). */
  cpu?: string;
  /** `"piped"` to write to the child's stdin; default none. */
  stdin?: "null" | "piped";
}

/**
 * The argv that runs `argv` pinned to `cpu` and under the open-files limit
 * `nofile` (raised by `sh`, which then execs the command, so that the PID
 * is the command's own).
 */
function wrapCommand(
  argv: readonly string[],
  options: Pick<ChildOptions, "cpu" | "nofile" | "nofileStrict"> = {},
): string[] {
  const pinned = options.cpu === undefined
    ? [...argv]
    : ["taskset", "-c", options.cpu, ...argv];
  if (options.nofile === undefined) return pinned;
  const ulimit = options.nofileStrict
    ? `ulimit -n ${options.nofile} &&`
    : `ulimit -n ${options.nofile} 2>/dev/null;`;
  return ["sh", "-c", `${ulimit} exec "$@"`, "sh", ...pinned];
}

/** The command `argv` as `options` say, no input, its output piped. */
function command(argv: readonly string[], options: ChildOptions): Deno.Command {
  const [cmd, ...args] = wrapCommand(argv, options);
  return new Deno.Command(cmd!, {
    args,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** A command running in the background, its stdout read line by line. */
export class Child implements AsyncDisposable {
  /** The subprocess. */
  readonly child: Deno.ChildProcess;
  /** Lines of stdout seen so far. */
  readonly lines: string[] = [];
  #stdout: AsyncIterator<string>;
  #stderr: Promise<string>;
  #stderrLines: AsyncIterator<string>;
  #draining?: Promise<void>;
  #done?: Promise<Output>;

  /** Starts `argv` (command first) as `options` say. */
  constructor(argv: readonly string[], options: ChildOptions = {}) {
    this.child = command(argv, options).spawn();
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

  /** The process ID. */
  get pid(): number {
    return this.child.pid;
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

  /**
   * From now on reads stdout as it comes (into {@linkcode lines}), so a
   * chatty child never blocks on a full pipe while nobody waits on a line.
   */
  drain(): void {
    this.#draining ??= (async () => {
      while (await this.nextLine() !== null) { /* kept in lines */ }
    })();
  }

  /** Waits for the exit; returns the code and the rest of the output. */
  wait(): Promise<Output> {
    this.drain();
    this.#done ??= (async () => {
      await this.#draining;
      const status = await this.child.status;
      return {
        code: status.code,
        stdout: this.lines.join("\n"),
        stderr: await this.#stderr,
      };
    })();
    return this.#done;
  }

  /**
   * Sends `signal` and waits for the exit; after `killAfterMs` (if given)
   * without one, sends SIGKILL.
   */
  async stop(
    signal: Deno.Signal = "SIGTERM",
    killAfterMs?: number,
  ): Promise<Output> {
    this.#kill(signal);
    const timer = killAfterMs === undefined
      ? undefined
      : setTimeout(() => this.#kill("SIGKILL"), killAfterMs);
    try {
      return await this.wait();
    } finally {
      clearTimeout(timer);
    }
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** Kills the command if it still runs, and waits. */
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

/** Runs `argv` to completion as `options` say; what it printed. */
export async function runCommand(
  argv: readonly string[],
  options: ChildOptions = {},
): Promise<Output> {
  const out = await command(argv, options).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/**
 * Runs `argv` to completion and parses the JSON report it prints on stdout;
 * if it prints none, throws its first stderr line (or its exit code, under
 * `name`).
 */
export async function runJson<T>(
  argv: readonly string[],
  options: ChildOptions & { name: string },
): Promise<T> {
  const out = await runCommand(argv, options);
  const text = out.stdout.trim();
  if (!text.startsWith("{")) {
    const err = out.stderr.trim().split("\n")[0];
    throw new Error(err || `${options.name} exited ${out.code}`);
  }
  return JSON.parse(text) as T;
}
