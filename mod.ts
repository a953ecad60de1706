/**
 * socket-notes: the classic socket notes as a Deno toolkit. The Test Server
 * and Test Client, a select() echo server, an I/O completion port echo
 * server, a UDP echo server, host and socket diagnostics, and an echo load
 * generator.
 *
 * @example The notes' conversation, in one program
 * ```ts
 * import { runTestClient, serveSequential } from "./mod.ts";
 *
 * await using server = await serveSequential({ port: 0, log: () => {} });
 * const lines = await runTestClient({ port: server.addr.port, log: () => {} });
 * console.log(lines); // ["Test Server", "Say Goodbye"]
 * ```
 *
 * @module
 */

// The network layer every server and client shares (_net.ts).
export type { Addr, TlsServerOptions } from "./_net.ts";
export type { ServerEndpointOptions } from "./_net_options.ts";
// servers/sequential.ts
export {
  NOTES_PORT,
  type SequentialServer,
  type SequentialServerOptions,
  serveSequential,
} from "./servers/sequential.ts";
// clients/client.ts
export {
  resolveHost,
  runTestClient,
  type TestClientOptions,
  type TlsClientOptions,
} from "./clients/client.ts";
// tools/hostinfo.ts
export {
  formatHostInfo,
  type HostInfo,
  hostInfo,
  type InterfaceAddress,
  interfaceAddresses,
  isLoopback,
} from "./tools/hostinfo.ts";
// servers/select_echo.ts
export {
  DEFAULT_BUFFER_SIZE,
  type SelectEchoOptions,
  type SelectionKey,
  Selector,
  serveSelectEcho,
} from "./servers/select_echo.ts";
// The handle and options both echo servers share (servers/_echo.ts).
export type {
  EchoServer,
  EchoServerOptions,
  EchoStats,
} from "./servers/_echo.ts";
// servers/completion_echo.ts
export {
  type Completion,
  type CompletionEchoOptions,
  CompletionPort,
  type IoOperation,
  PORT_CLOSED,
  PortSocket,
  PortWorker,
  serveCompletionEcho,
} from "./servers/completion_echo.ts";
// servers/udp_echo.ts
export {
  formatUdpStats,
  MAX_PEERS,
  MAX_UDP_PAYLOAD,
  PEER_IDLE_MS,
  serveUdpEcho,
  type UdpEchoOptions,
  type UdpEchoServer,
  type UdpEchoStats,
} from "./servers/udp_echo.ts";
// tools/netstat.ts
export {
  type CheckOptions,
  checkPort,
  type CheckResult,
  decodeProcNetAddress,
  decodeProcNetLine,
  type Endpoint,
  filterSockets,
  findSocketOwners,
  formatSocketTable,
  type ListOptions,
  listSockets,
  type OwnerScan,
  parseNetstatOutput,
  parseProcNet,
  parseStateName,
  parseTarget,
  type ProbeStatus,
  type ProcessInfo,
  type Protocol,
  readProcNet,
  type SocketEntry,
  type SocketFilter,
  type SocketListing,
  type Target,
  TCP_STATES,
  waitForPort,
  type WaitOptions,
  type WaitResult,
} from "./tools/netstat.ts";
// tools/proxy.ts
export {
  formatProxyStats,
  PROXY_BUFFER_SIZE,
  type ProxyOptions,
  type ProxyServer,
  type ProxyStats,
  type ProxyUpstream,
  serveProxy,
  type ToxicSpec,
  type ToxicStats,
  type ToxicStream,
} from "./tools/proxy.ts";
// tools/load.ts
export {
  type CapacityOptions,
  type CapacityReport,
  type CapacityStep,
  type CpuReport,
  DEFAULT_UDP_RATE,
  FAIR_LIMIT,
  formatReport,
  formatUdpReport,
  type IntervalLatency,
  LatencyHistogram,
  type LatencySummary,
  type LoadEnd,
  type LoadEngine,
  type LoadInterval,
  type LoadMode,
  type LoadOptions,
  type LoadProgress,
  type LoadReport,
  MAX_DATAGRAM,
  runCapacitySearch,
  runLoad,
  runUdpLoad,
  UDP_HEADER,
  type UdpLoadInterval,
  type UdpLoadOptions,
  type UdpLoadProgress,
  type UdpLoadReport,
} from "./tools/load.ts";
