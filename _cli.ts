/**
 * The command-line conventions every script of socket-notes shares: option
 * parsing on `node:util` `parseArgs` with generated `--help`, value checks
 * that name the offending value, one-line errors with fixed exit codes (2 for
 * a usage mistake, 1 for a runtime failure), and SIGINT, SIGTERM and SIGHUP
 * as an `AbortSignal`. Where scripts listen and connect, and the `listening
 * on` line, live in the network layer (`_net.ts`).
 *
 * Private to this package: scripts import it, `mod.ts` does not re-export it.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The notes' port, `0x9988`: the default of every server and client here. */
export const NOTES_PORT = 0x9988;

/** Exit code for a usage mistake: unknown option, bad value, missing argument. */
export const EXIT_USAGE = 2;
/** Exit code for a runtime failure: cannot bind, cannot connect, timeout. */
export const EXIT_FAILURE = 1;
/**
 * Exit code after a second SIGINT, SIGTERM or SIGHUP: the user would not wait
 * for the clean stop the first one began (128 + SIGINT, as a shell reports).
 */
export const EXIT_INTERRUPTED = 130;

/**
 * The longest wait a timer holds, in ms (2^31 - 1, about 24.8 days):
 * `setTimeout` fires after 1 ms for anything longer.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A mistake in the command line. `runMain` prints its message on one line and
 * exits with {@linkcode EXIT_USAGE}.
 */
export class UsageError extends Error {
  /** Builds a usage error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * A runtime failure a user can act on (cannot bind, cannot resolve, refused).
 * `runMain` prints its message on one line, without a stack trace, and exits
 * with {@linkcode EXIT_FAILURE}.
 */
export class CliError extends Error {
  /** Builds a runtime failure with a one-line message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliError";
  }
}

/** One option of a script: the `parseArgs` config plus what `--help` shows. */
export interface OptionSpec {
  /** `string` takes a value, `boolean` is a flag. */
  type: "string" | "boolean";
  /** One-letter alias, as `-c`. */
  short?: string;
  /** Whether the option may be given more than once (values are collected). */
  multiple?: boolean;
  /** Default value (as a string for `string` options). */
  default?: string | boolean;
  /** Name of the value in `--help`, as `SECONDS`. */
  arg?: string;
  /** One line for `--help`. */
  description: string;
}

/** What a script's command line looks like. */
export interface CommandSpec {
  /** Path of the script as a user types it, as `servers/sequential.ts`. */
  name: string;
  /** One sentence saying what the script does. */
  summary: string;
  /** Positional arguments in the usage line, as `[NAME]`; none if omitted. */
  positionals?: string;
  /** Options, by long name. `--help` is added. */
  options: Record<string, OptionSpec>;
  /** Extra text after the options (examples, notes). */
  epilog?: string;
}

/** The parsed command line: option values by long name, and positionals. */
export interface ParsedArgs {
  /** Option values; a `string` option without default is `undefined`. */
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  /** Positional arguments, in order. */
  positionals: string[];
}

/** Renders the `--help` text of a command. */
export function usage(spec: CommandSpec): string {
  const lines = [
    `Usage: ${spec.name} [options]${
      spec.positionals ? ` ${spec.positionals}` : ""
    }`,
    "",
    ...wrap(spec.summary, 78),
    "",
    "Options:",
  ];
  const entries: [string, string][] = Object.entries(spec.options).map(
    ([long, o]) => {
      const flag = `${o.short ? `-${o.short}, ` : "    "}--${long}${
        o.type === "string" ? ` ${o.arg ?? "VALUE"}` : ""
      }`;
      const def = o.default !== undefined && o.type === "string"
        ? ` (default ${o.default})`
        : "";
      return [flag, o.description + def];
    },
  );
  entries.push(["-h, --help", "Print this help and exit."]);
  const width = Math.max(...entries.map(([flag]) => flag.length));
  for (const [flag, text] of entries) {
    lines.push(`  ${flag.padEnd(width)}  ${text}`);
  }
  if (spec.epilog) lines.push("", spec.epilog.trimEnd());
  return lines.join("\n");
}

/** Breaks `text` into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/**
 * Parses `args` against `spec` with `node:util` `parseArgs` (strict).
 * Returns `undefined` after printing the usage when `--help` is given.
 *
 * @throws {UsageError} On an unknown option, a missing value, or an
 * unexpected positional argument.
 */
export function parseCommandLine(
  args: string[],
  spec: CommandSpec,
): ParsedArgs | undefined {
  const options: Record<
    string,
    {
      type: "string" | "boolean";
      short?: string;
      multiple?: boolean;
      default?: string | boolean;
    }
  > = { help: { type: "boolean", short: "h" } };
  for (const [long, o] of Object.entries(spec.options)) {
    options[long] = { type: o.type };
    if (o.short) options[long].short = o.short;
    if (o.multiple) options[long].multiple = true;
    if (o.default !== undefined) options[long].default = o.default;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: joinDashValues(args, spec),
      options,
      strict: true,
      allowPositionals: spec.positionals !== undefined,
    });
  } catch (error) {
    // parseArgs explains itself over up to three lines; the first sentence
    // is enough.
    const message = error instanceof Error ? error.message : String(error);
    const first = (message.split("\n")[0] ?? "").split(". ")[0] ?? "";
    throw new UsageError(`${first.replace(/\.$/, "")} (see --help)`);
  }
  if (parsed.values.help) {
    console.log(usage(spec));
    return undefined;
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

/**
 * Joins a value option and a following argument that starts with `-` into
 * one argument, so that parseArgs takes it as the value: a number (`--port
 * -1`, `-c -1`) becomes `--port=-1`, and the value check then names the
 * option and its range. Any other dash-led argument after a value option is
 * a forgotten value (`--host --port 80`), said in one line. parseArgs calls
 * both "ambiguous", in three lines.
 *
 * @throws {UsageError} When a value option is followed by another option.
 */
function joinDashValues(args: string[], spec: CommandSpec): string[] {
  const byShort = new Map<string, string>();
  for (const [long, o] of Object.entries(spec.options)) {
    if (o.short) byShort.set(o.short, long);
  }
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      joined.push(...args.slice(i));
      break;
    }
    const long = arg.startsWith("--")
      ? arg.slice(2)
      : /^-\w$/.test(arg)
      ? byShort.get(arg[1]!)
      : undefined;
    const option = long === undefined ? undefined : spec.options[long];
    const next = args[i + 1];
    if (
      option?.type !== "string" || next === undefined ||
      !next.startsWith("-") || next === "-"
    ) {
      joined.push(arg);
    } else if (/^-\.?\d/.test(next)) {
      joined.push(`--${long}=${next}`);
      i++;
    } else {
      throw new UsageError(
        `Option '--${long}' needs a value before "${next}"; write ` +
          `--${long}=${next} for a value that starts with - (see --help)`,
      );
    }
  }
  return joined;
}

/**
 * Parses a port number.
 *
 * @throws {UsageError} Unless `value` is a whole number from 0 to 65535.
 */
export function parsePort(value: unknown, name = "--port"): number {
  return parseInteger(value, name, 0, 65535);
}

/**
 * Parses a whole number within `[min, max]`.
 *
 * @throws {UsageError} With the offending value quoted.
 */
export function parseInteger(
  value: unknown,
  name: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number {
  const text = String(value);
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER
      ? `a whole number of at least ${min}`
      : `${min} to ${max}`;
    throw new UsageError(`Cannot parse ${name} "${text}": expected ${range}`);
  }
  return n;
}

/**
 * Parses a duration in seconds (fractions allowed) and returns whole
 * milliseconds, from 1 ms to {@linkcode MAX_TIMER_MS} (what a timer holds):
 * every duration option of every script goes through it. `0` is allowed
 * only when `allowZero` is set (it means "off").
 *
 * @throws {UsageError} Unless `value` is a number of seconds in that range.
 */
export function parseSeconds(
  value: unknown,
  name: string,
  allowZero = false,
): number {
  const text = String(value);
  const n = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
  if (allowZero && n === 0) return 0;
  // A fraction that rounds to 0 ms would fire at once (or mean "off").
  const ms = Math.round(n * 1000);
  if (!(ms >= 1 && ms <= MAX_TIMER_MS)) {
    const range = `0.001 to ${Math.floor(MAX_TIMER_MS / 1000)} seconds`;
    throw new UsageError(
      `Cannot parse ${name} "${text}": expected ${
        allowZero ? `0 for off, or ${range}` : range
      }`,
    );
  }
  return ms;
}

/**
 * Checks a host name or IP address from the command line (an IPv6 address
 * may be in brackets) and returns it as given: every host option of every
 * script goes through it.
 *
 * @throws {UsageError} If it is empty, blank or holds white space.
 */
export function parseHost(value: unknown, name: string): string {
  const text = String(value);
  const bare = text.replace(/^\[(.*)\]$/, "$1");
  if (bare === "" || /\s/.test(text)) {
    throw new UsageError(
      `Cannot parse ${name} "${text}": expected a host name or an IP address`,
    );
  }
  return text;
}

/**
 * Whether `error` is what a peer's reset or abrupt close looks like; such a
 * connection is closed and counted, never retried.
 */
export function isPeerGone(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected;
}

/** Whether `error` says the resource was closed under a pending operation. */
export function isClosed(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}

/**
 * The one-line error of a file that an option names and that cannot be read
 * or written, saying which permission to grant when that is the reason:
 * `Cannot read --ca ca.pem: ... (grant --allow-read=ca.pem)`.
 */
export function fileError(
  access: "read" | "write",
  option: string,
  path: string,
  error: unknown,
): CliError {
  const grant = error instanceof Deno.errors.NotCapable ||
      error instanceof Deno.errors.PermissionDenied
    ? ` (grant --allow-${access}=${path})`
    : "";
  return new CliError(
    `Cannot ${access} ${option} ${path}: ${describeError(error)}${grant}`,
  );
}

/** The short reason of an error, for a one-line message. */
export function describeError(error: unknown): string {
  if (error instanceof Deno.errors.AddrInUse) return "address already in use";
  if (error instanceof Deno.errors.PermissionDenied) {
    return "permission denied";
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    return "connection refused";
  }
  if (error instanceof Deno.errors.TimedOut) return "timed out";
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return "address not available";
  }
  const message = error instanceof Error ? error.message : String(error);
  // rustls explains an unclean TLS close with a link; the words suffice.
  if (message.includes("without sending TLS close_notify")) {
    return "closed without TLS close_notify";
  }
  // Deno appends the OS error ("... (os error 98)"); the words carry the news.
  return message.replace(/\s*\(os error \d+\)$/, "").split("\n")[0] ?? message;
}

/** What `--help` says about signals, for every script that uses {@linkcode shutdownSignal}. */
export const SIGNALS_HELP =
  "SIGHUP counts as SIGTERM; a second signal stops at once (exit 130).";

/**
 * An `AbortSignal` that aborts on the first SIGINT, SIGTERM or SIGHUP (a
 * closed terminal stops a script as cleanly as SIGTERM does). A second one
 * means the user will not wait for that clean stop: `onForce` runs (to print
 * what is cheap to print, as the stats so far) and the process exits with
 * {@linkcode EXIT_INTERRUPTED}. Call the returned `dispose` (or use `using`)
 * to remove the signal listeners.
 */
export function shutdownSignal(
  options: { onForce?: () => void } = {},
): { signal: AbortSignal } & Disposable {
  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM", "SIGHUP"];
  const handler = () => {
    if (!controller.signal.aborted) return controller.abort();
    try {
      options.onForce?.();
    } finally {
      Deno.exit(EXIT_INTERRUPTED);
    }
  };
  for (const s of signals) Deno.addSignalListener(s, handler);
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      for (const s of signals) Deno.removeSignalListener(s, handler);
    },
  };
}

/**
 * Sleeps `ms`, or less if `signal` aborts first; never rejects.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Runs a script's `main`, then exits with its code. A {@linkcode UsageError}
 * prints one line and exits 2; a {@linkcode CliError}, a Deno permission
 * error, or any other error prints one line and exits 1, never a stack trace.
 */
export async function runMain(
  main: (args: string[]) => Promise<number | void> | number | void,
  args: string[] = Deno.args,
): Promise<never> {
  let code: number;
  try {
    code = (await main(args)) ?? 0;
  } catch (error) {
    code = reportError(error);
  }
  Deno.exit(code);
}

/** Prints `error` as one line on stderr and returns the exit code for it. */
export function reportError(error: unknown): number {
  if (error instanceof UsageError) {
    console.error(`error: ${oneLine(error.message)}`);
    return EXIT_USAGE;
  }
  if (error instanceof CliError) {
    console.error(`error: ${oneLine(error.message)}`);
    return EXIT_FAILURE;
  }
  console.error(`error: ${describeError(error)}`);
  return EXIT_FAILURE;
}

/** `text` with its line breaks made spaces: an error is one line. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}
