/**
 * The servers the bench sets side by side, as data: each a name, what it
 * is, and its command over each transport it serves (or why it cannot
 * run). The project's echo servers run as their tasks run them, with the
 * runtime settings of `_runtime.ts`; the baselines as their authors would,
 * with none. Adding a server is adding an entry to {@linkcode benchServers}.
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import { ECHO_RUNTIME_ENV, ECHO_V8_FLAGS } from "../_runtime.ts";
import { STREAMS, TLS_CERT, TLS_KEY, type Transport } from "./_cases.ts";

/** A server the bench can start. */
export interface ServerSpec {
  /** Short name in the table. */
  name: string;
  /** What it is, for the notes under the table. */
  about: string;
  /**
   * Command and arguments over `transport` (the port 0 or the socket path
   * already in them), a reason it cannot run, or undefined where the server
   * does not serve that transport.
   */
  command: (transport: Transport) => string[] | string | undefined;
  /** Environment of the server process, beside NO_COLOR. */
  env?: Readonly<Record<string, string>>;
}

/** What the servers' commands depend on. */
export interface ServerContext {
  /** The project root (servers may read it: the TLS certificate is there). */
  root: string;
  /** The bench's output directory, where the C server is built. */
  out: string;
  /** The Unix socket path of the Unix cases. */
  socket: string;
  /** Whether gcc is on PATH. */
  hasGcc: boolean;
  /** Whether node is on PATH. */
  hasNode: boolean;
  /** Whether `path` (under the root) exists. */
  exists(path: string): boolean;
}

/** Every server of the bench, in the order of the table. */
export function benchServers(ctx: ServerContext): ServerSpec[] {
  const { root, out, socket, hasGcc, hasNode, exists } = ctx;
  // Over Unix a server may reach only its socket; over TLS it reads the
  // certificate under the root, which every Deno server may read.
  const denoServer = (
    script: string,
    extra: string[] = [],
    flags: string[] = [],
    over: readonly Transport[] = STREAMS,
  ) =>
  (transport: Transport) => {
    if (!over.includes(transport)) return undefined;
    if (!exists(script)) return `${script} does not exist yet`;
    const where = transport === "unix"
      ? [
        `--allow-net=unix:${socket}`,
        `--allow-read=${root},${socket}`,
        `--allow-write=${socket}`,
        script,
        ...["--unix", socket],
      ]
      : [
        "--allow-net=127.0.0.1",
        `--allow-read=${root}`,
        script,
        ...["--port", "0"],
        ...(transport === "tls"
          ? ["--tls", "--cert", TLS_CERT, "--key", TLS_KEY]
          : []),
      ];
    return [Deno.execPath(), "run", "--quiet", ...flags, ...where, ...extra];
  };
  // A UDP server may reach loopback peers only (Deno checks every send).
  const udpDenoServer = (script: string, extra: string[]) =>
    exists(script)
      ? [
        Deno.execPath(),
        ...["run", "--quiet", "--unstable-net", "--allow-net=127.0.0.1"],
        script,
        ...["--port", "0", ...extra],
      ]
      : `${script} does not exist yet`;
  const many = ["--max-connections", "20000"];
  return [
    {
      name: "c",
      about:
        "bench/_epoll_echo.c: single-threaded C epoll loop (over UDP a blocking recvfrom/sendto loop), the fastest server here: its row shows what load.ts itself can reach",
      command: (transport) => {
        if (transport !== "tcp" && transport !== "udp") return undefined;
        if (!hasGcc) return "gcc not found";
        return [
          `${out}/epoll_echo`,
          "0",
          ...(transport === "udp" ? ["udp"] : []),
        ];
      },
    },
    {
      name: "loop",
      about:
        "bench/_loop_echo.ts: per-connection conn.read/conn.write loop, 16 KiB buffer (the yardstick); over UDP one listenDatagram receive/send loop",
      command: (transport) =>
        transport === "udp"
          ? udpDenoServer("bench/_loop_echo.ts", ["--udp"])
          : denoServer("bench/_loop_echo.ts")(transport),
    },
    {
      name: "select",
      about: "servers/select_echo.ts",
      command: denoServer("servers/select_echo.ts", many, [ECHO_V8_FLAGS]),
      env: ECHO_RUNTIME_ENV,
    },
    {
      name: "completion-1",
      about: "servers/completion_echo.ts --threads 1",
      command: denoServer(
        "servers/completion_echo.ts",
        [...many, "--threads", "1"],
        [ECHO_V8_FLAGS],
      ),
      env: ECHO_RUNTIME_ENV,
    },
    {
      name: "completion-2",
      about:
        "servers/completion_echo.ts --threads 2 (its second thread shares core 0 when pinned)",
      // --threads needs TCP: no Unix socket.
      command: denoServer(
        "servers/completion_echo.ts",
        [...many, "--threads", "2"],
        [ECHO_V8_FLAGS],
        ["tcp", "tls"],
      ),
      env: ECHO_RUNTIME_ENV,
    },
    {
      name: "node",
      about:
        "bench/_node_echo.mjs: Node's net (tls over TLS), socket.pipe(socket); over UDP dgram, each message sent back",
      command: (transport) => {
        if (!hasNode) return "node not found on PATH";
        const node = ["node", "bench/_node_echo.mjs"];
        if (transport === "udp") return [...node, "0", "--udp"];
        if (transport === "unix") return [...node, "--unix", socket];
        return [
          ...node,
          "0",
          ...(transport === "tls"
            ? ["--tls", "--cert", TLS_CERT, "--key", TLS_KEY]
            : []),
        ];
      },
    },
    {
      name: "pipe",
      about:
        "bench/_pipe_echo.ts: the docs' conn.readable.pipeTo(conn.writable)",
      command: denoServer("bench/_pipe_echo.ts", [], [], ["tcp"]),
    },
    {
      name: "udp-echo",
      about:
        "servers/udp_echo.ts, as the README runs it (--allow-net=127.0.0.1, no runtime settings)",
      command: (transport) =>
        transport === "udp"
          ? udpDenoServer("servers/udp_echo.ts", [])
          : undefined,
    },
  ];
}
