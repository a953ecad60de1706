/**
 * socket-notes: the classic socket notes as a Deno toolkit. The Test Server
 * and Test Client, a select() echo server, an I/O completion port echo
 * server, host and socket diagnostics, and an echo load generator.
 *
 * @example
 * ```ts ignore
 * import { serveSequential } from "@socket-notes/socket-notes";
 * ```
 *
 * @module
 */

// servers/sequential.ts
// clients/client.ts
// tools/hostinfo.ts
// servers/select_echo.ts
// servers/completion_echo.ts
// tools/netstat.ts
// tools/load.ts
