/**
 * The runtime settings the project's echo servers are run with where many
 * connections are busy: one V8 flag and one environment variable of Deno's.
 * Neither can be set by a script for itself once it runs, so the tasks
 * (deno.json), `deno task compile`, the bench and the servers' `--help` all
 * take them from here.
 *
 * Private to this package.
 *
 * @module
 */

/**
 * The V8 setting the echo servers are run with (README, `deno task
 * compile`, the bench): a young generation of at most 4 MiB per half. An
 * accept burst grows V8's default young generation to 16 MiB per half, and
 * its pages stay resident: measured here, 10,000 held connections cost the
 * completion server 7.2-7.4 KB of RSS each without it and 5.8 KB with it,
 * at the same pingpong rate. `deno run` takes it as `--v8-flags=...`; a
 * script cannot set it for itself once V8 has started.
 */
export const ECHO_V8_FLAGS = "--v8-flags=--max-semi-space-size=4";

/**
 * The runtime setting the echo servers are run with where many connections
 * are busy (README, the bench): Deno reads `DENO_TOKIO_EVENT_INTERVAL` when
 * it builds its event loop, and at 1 the loop asks the kernel for socket
 * readiness after every turn instead of every 61st. With the default, a
 * saturated server on `Deno.Conn` serves most connections within a
 * millisecond and leaves a few waiting for up to 2 s (reads stay pending
 * while their bytes sit in the socket); measured here at 500 connections
 * with a C pingpong client, completion server: p99 15-43 ms by default,
 * 3.9-5.8 ms at 1, and the 50-connection rate 1-4% higher. Where the client
 * is the bottleneck (the bench's 1,000 connections) it does not help. It is
 * an environment variable of the process, so it goes before the command
 * (or into a service's environment); a script cannot set it for itself,
 * and `deno compile` does not bake it in.
 */
export const ECHO_RUNTIME_ENV: Readonly<Record<string, string>> = {
  DENO_TOKIO_EVENT_INTERVAL: "1",
};
