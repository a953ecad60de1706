/**
 * Tests of `tools/load.ts --udp` with real sockets: against a faulty UDP echo
 * written here (it drops, duplicates, swaps, damages and delays datagrams by
 * their sequence number) every count of the report is exactly right; nothing
 * listening is a clear report; IPv6; `--max-loss`; the project's
 * `servers/udp_echo.ts`; and socat's UDP echo, a peer nobody here wrote.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Running, runScript } from "./_helpers.ts";
import { jsonStream, overPrecise } from "./_load_helpers.ts";
import type { UdpLoadReport } from "../tools/load.ts";
import { Child } from "../_process.ts";

const LOAD = "tools/load.ts";

/** Runs the UDP load with `--json` and returns its exit code and report. */
async function udpLoad(
  args: string[],
): Promise<{ code: number; report: UdpLoadReport; stderr: string }> {
  const out = await runScript(LOAD, ["--udp", "--json", "--quiet", ...args]);
  let report: UdpLoadReport;
  try {
    report = JSON.parse(out.stdout);
  } catch {
    throw new Error(
      `No JSON from load.ts --udp (exit ${out.code}): ${out.stdout} ${out.stderr}`,
    );
  }
  return { code: out.code, report, stderr: out.stderr };
}

/** What the echo does with one datagram, by its flow and sequence number. */
type Fault = "echo" | "drop" | "duplicate" | "hold" | "payload" | "header" | {
  delay: number;
};

/**
 * A UDP echo in this process that reads the load generator's header (flow
 * at byte 0, sequence number at bytes 4-11) and does to each datagram what
 * `fault` says: `hold` keeps it until the flow's next datagram has gone
 * back (the pair arrives swapped), `payload` and `header` flip one byte
 * there, `delay` sends it back after that many ms.
 */
function faultyEcho(
  fault: (seq: number) => Fault,
  hostname = "127.0.0.1",
): { port: number } & AsyncDisposable {
  const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const held = new Map<string, Uint8Array>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const serving = (async () => {
    const buf = new Uint8Array(65_536);
    try {
      while (true) {
        const [data, addr] = await socket.receive(buf);
        const a = addr as Deno.NetAddr;
        const peer = `${a.hostname}:${a.port}`;
        const view = new DataView(data.buffer, data.byteOffset, data.length);
        const seq = data.length >= 12
          ? view.getUint32(4) * 2 ** 32 + view.getUint32(8)
          : -1;
        const what = seq < 0 ? "echo" : fault(seq);
        if (what === "drop") continue;
        if (what === "hold") {
          held.set(peer, data.slice());
          continue;
        }
        if (what === "payload") data[data.length - 1]! ^= 0x01;
        if (what === "header") data[2]! ^= 0x80;
        if (typeof what === "object") {
          const copy = data.slice();
          const timer = setTimeout(() => {
            timers.delete(timer);
            socket.send(copy, addr).catch(() => {});
          }, what.delay);
          timers.add(timer);
          continue;
        }
        await socket.send(data, addr);
        if (what === "duplicate") await socket.send(data, addr);
        const before = held.get(peer);
        if (before !== undefined) {
          held.delete(peer);
          await socket.send(before, addr);
        }
      }
    } catch {
      // closed
    }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      for (const timer of timers) clearTimeout(timer);
      socket.close();
      await serving;
    },
  };
}

Deno.test("load.ts --udp finds every datagram intact through servers/udp_echo.ts", async () => {
  await using server = new Running("servers/udp_echo.ts", ["--port", "0"]);
  const port = await server.port();
  const { code, report } = await udpLoad([
    "-p",
    String(port),
    "-c",
    "4",
    "-s",
    "1200",
    "--count",
    "50",
    "--rate",
    "200",
  ]);
  assert.equal(report.sent, 200);
  assert.equal(report.received, 200, JSON.stringify(report));
  assert.equal(report.corrupted + report.duplicated + report.late, 0);
  assert.equal(code, 0);
  const out = await server.stop("SIGTERM");
  // The server saw exactly what the load sent.
  assert.match(out.stdout + out.stderr, /200 datagrams in \(240000 bytes\)/);
});

/** A port nothing listens on: bound and closed. */
function freeUdpPort(hostname = "127.0.0.1"): number {
  const socket = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  const port = (socket.addr as Deno.NetAddr).port;
  socket.close();
  return port;
}

/** The faults of the exact-count test, by sequence number. */
function faultBySeq(seq: number): Fault {
  if (seq === 20) return { delay: 500 };
  if (seq % 20 === 1) return "header";
  switch (seq % 10) {
    case 3:
      return "duplicate";
    case 5:
      return "hold";
    case 7:
      return "payload";
    case 9:
      return "drop";
    default:
      return "echo";
  }
}

Deno.test("load.ts --udp counts every fault of a faulty echo exactly", async () => {
  // Per flow of 100 datagrams (sequence numbers 0-99): 10 dropped (9, 19,
  // ...), 10 duplicated (3, 13, ...), 10 swapped with the next (5, 15, ...:
  // each arrives after 6, 16, ...), 10 with a payload byte flipped (7, 17,
  // ...), 5 with a header byte flipped (1, 21, 41, 61, 81) and one (20)
  // back 500 ms late, past the 250 ms loss timeout.
  await using echo = faultyEcho(faultBySeq);
  const flows = 3;
  const { code, report } = await udpLoad([
    "-p",
    String(echo.port),
    "-c",
    String(flows),
    "--count",
    "100",
    "--rate",
    "100",
    "--loss-timeout",
    "0.25",
  ]);
  const perFlow = {
    sent: 100,
    // Lost: 10 dropped, 10 and 5 corrupted, 1 late.
    lost: 26,
    received: 74,
    duplicated: 10,
    reordered: 10,
    corrupted: 15,
    late: 1,
  };
  const counts = {
    sent: report.sent,
    lost: report.lost,
    received: report.received,
    duplicated: report.duplicated,
    reordered: report.reordered,
    corrupted: report.corrupted,
    late: report.late,
  };
  assert.deepEqual(
    counts,
    Object.fromEntries(
      Object.entries(perFlow).map(([k, n]) => [k, n * flows]),
    ),
    JSON.stringify(report),
  );
  assert.equal(report.lostPercent, 26);
  // iperf3's names beside ours.
  assert.equal(report.packets, 300);
  assert.equal(report.lost_packets, 78);
  assert.equal(report.lost_percent, 26);
  assert.equal(report.out_of_order, 30);
  assert.equal(report.jitter_ms, report.jitterMs);
  assert.equal(report.latency.samples, 222);
  assert.ok(report.latency.max < 250, `max ${report.latency.max}`);
  assert.equal(report.bytesSent, 300 * 64);
  assert.equal(report.bytesReceived, 222 * 64);
  assert.equal(report.foreign + report.refused + report.sendErrors, 0);
  assert.equal(report.transport, "udp");
  assert.equal(report.flood, false);
  assert.equal(report.rate, 100);
  assert.equal(report.ok, false, "corrupted datagrams fail the run");
  assert.equal(code, 1);
  assert.ok(
    report.errors.some((e) => /payload changed/.test(e)),
    JSON.stringify(report.errors),
  );
});

Deno.test("load.ts --udp sends 24-byte and 65,507-byte datagrams intact", async () => {
  await using echo = faultyEcho(() => "echo");
  for (const size of ["24", "65507", "1001"]) {
    const { code, report } = await udpLoad([
      "-p",
      String(echo.port),
      "-c",
      "2",
      "-s",
      size,
      "--count",
      "20",
      "--rate",
      "200",
    ]);
    // Loopback drops a 64 KB datagram when the echo (in this busy test
    // process) falls three behind its 208 KB receive buffer: a few lost
    // are UDP's right; any cut short, changed or doubled is a fault.
    assert.equal(report.sent, 40);
    assert.ok(report.received >= 36, `${size}: ${JSON.stringify(report)}`);
    assert.equal(report.received + report.lost, 40);
    assert.equal(report.corrupted + report.duplicated, 0);
    assert.equal(report.bytesReceived, report.received * Number(size));
    assert.equal(code, 0);
  }
});

Deno.test("load.ts --udp reports a port nothing listens on as all lost, exit 1", async () => {
  const port = freeUdpPort();
  const out = await runScript(LOAD, [
    "--udp",
    "-p",
    String(port),
    "-c",
    "2",
    "--count",
    "20",
    "--rate",
    "200",
    "--loss-timeout",
    "0.2",
    "-q",
  ]);
  assert.equal(out.code, 1);
  assert.equal(out.stderr, "");
  assert.match(
    out.stdout,
    /^datagrams: 40 sent, 0 received, 40 lost \(100%, 0 of them late\)/m,
  );
  assert.match(
    out.stdout,
    new RegExp(`^error: nothing came back from 127\\.0\\.0\\.1:${port}`, "m"),
  );
  assert.match(out.stdout, /^result: FAILED$/m);
  // The same, as JSON: refused or lost, never a crash.
  const { code, report } = await udpLoad([
    "-p",
    String(port),
    "-c",
    "1",
    "--count",
    "5",
    "--loss-timeout",
    "0.1",
  ]);
  assert.equal(code, 1);
  assert.equal(report.sent, 5);
  assert.equal(report.lost, 5);
  assert.equal(report.lost_percent, 100);
});

Deno.test("load.ts --udp --max-loss fails a run only above it", async () => {
  // Every fourth datagram dropped: 25% loss, nothing else wrong.
  await using echo = faultyEcho((seq) => seq % 4 === 3 ? "drop" : "echo");
  const args = [
    "-p",
    String(echo.port),
    "-c",
    "2",
    "--count",
    "40",
    "--rate",
    "400",
    "--loss-timeout",
    "0.2",
  ];
  const reported = await udpLoad(args);
  assert.equal(reported.report.lostPercent, 25);
  assert.equal(reported.report.maxLoss, null);
  assert.equal(reported.code, 0, "loss alone is reported, not an error");
  const under = await udpLoad([...args, "--max-loss", "30"]);
  assert.equal(under.report.lossExceeded, false);
  assert.equal(under.code, 0);
  const over = await runScript(LOAD, [
    "--udp",
    "-q",
    ...args,
    "--max-loss",
    "20",
    "--allow-errors",
  ]);
  assert.equal(over.code, 1, over.stdout);
  assert.match(
    over.stdout,
    /^result: FAILED \(loss 25% above --max-loss 20%\)$/m,
  );
});

Deno.test("load.ts --udp --rate 0 floods, says so, and tracks every datagram", async () => {
  // Half a second of flood: tens of thousands of datagrams a flow, so each
  // flow's ring (4,096 slots to start) grows while datagrams are in flight.
  // Loss is whatever the buffers drop, but every datagram is accounted
  // for: none mistaken for late, duplicated or corrupted.
  await using echo = faultyEcho((seq) => seq % 4 === 3 ? "drop" : "echo");
  const out = await runScript(LOAD, [
    "--udp",
    "-p",
    String(echo.port),
    "-c",
    "2",
    "--rate",
    "0",
    "-d",
    "0.5",
    "--loss-timeout",
    "0.5",
    "--json",
    "-q",
  ]);
  const report: UdpLoadReport = JSON.parse(out.stdout);
  assert.equal(report.flood, true);
  assert.ok(report.sent > 8192, `only ${report.sent} sent`);
  assert.equal(report.received + report.lost, report.sent);
  assert.ok(report.lost >= report.sent / 4 - 2, JSON.stringify(report));
  assert.equal(
    report.late + report.duplicated + report.corrupted + report.foreign,
    0,
    JSON.stringify(report),
  );
  assert.ok(report.received > 0);
  assert.equal(out.code, 0, out.stdout);
  const text = await runScript(LOAD, [
    "--udp",
    "-p",
    String(echo.port),
    "-c",
    "1",
    "--rate",
    "0",
    "--count",
    "100",
    "-q",
  ]);
  assert.match(text.stdout, /flooding \(--rate 0: as fast as the sockets/);
  assert.match(text.stdout, /^datagrams: 100 sent, /m);
});

Deno.test("load.ts --udp ends early on SIGINT, reports `interrupted` and exits 130", async () => {
  await using echo = faultyEcho(() => "echo");
  await using proc = new Running(LOAD, [
    "--udp",
    "-p",
    String(echo.port),
    "-c",
    "2",
    "-d",
    "60",
    "--json",
  ]);
  await proc.waitForStderr(/running/);
  const out = await proc.stop("SIGINT");
  assert.equal(out.code, 130, out.stderr);
  const report: UdpLoadReport = JSON.parse(out.stdout);
  assert.equal(report.interrupted, true);
  assert.ok(report.seconds < 60, `${report.seconds}`);
  assert.ok(report.received > 0);
  assert.equal(report.received + report.lost, report.sent);
});

Deno.test("load.ts --udp resolves a name; one that does not resolve is one line, exit 1", async () => {
  await using echo = faultyEcho(() => "echo");
  const { code, report } = await udpLoad([
    "--host",
    "localhost",
    "-p",
    String(echo.port),
    "-c",
    "1",
    "--count",
    "10",
  ]);
  assert.equal(report.target, `localhost:${echo.port}`);
  assert.equal(report.received, 10, JSON.stringify(report));
  assert.equal(code, 0);
  const out = await runScript(LOAD, [
    "--udp",
    "--host",
    "nosuch.invalid",
    "-p",
    String(echo.port),
    "-q",
  ]);
  assert.equal(out.code, 1);
  assert.equal(out.stdout, "");
  assert.match(
    out.stderr,
    /^error: Cannot resolve "nosuch\.invalid": [^\n]+\n$/,
  );
});

/** Whether a UDP socket binds ::1 here. */
function haveIpv6(): boolean {
  try {
    Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 })
      .close();
    return true;
  } catch {
    console.log("::1 does not bind here: the IPv6 test is skipped");
    return false;
  }
}

Deno.test({
  name: "load.ts --udp over IPv6 (::1)",
  ignore: !haveIpv6(),
}, async () => {
  await using echo = faultyEcho(() => "echo", "::1");
  for (const host of ["::1", "[::1]"]) {
    const { code, report } = await udpLoad([
      "--host",
      host,
      "-p",
      String(echo.port),
      "-c",
      "2",
      "--count",
      "30",
      "--rate",
      "300",
    ]);
    assert.equal(report.target, `[::1]:${echo.port}`);
    assert.equal(report.received, 60, JSON.stringify(report));
    assert.equal(report.lost + report.corrupted + report.foreign, 0);
    assert.equal(code, 0);
  }
});

/** Whether `binary` runs here. */
async function installed(binary: string, ...args: string[]): Promise<boolean> {
  try {
    await new Deno.Command(binary, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return true;
  } catch {
    return false;
  }
}

const HAVE_SOCAT = await installed("socat", "-V") &&
  await installed("setsid", "--version");
if (!HAVE_SOCAT) {
  console.log("socat or setsid is not installed: the socat test is skipped");
}

Deno.test({
  name:
    "load.ts --udp through socat UDP-RECVFROM fork EXEC:cat, every datagram checked",
  ignore: !HAVE_SOCAT,
}, async () => {
  // UDP-RECVFROM forks a child (and a cat) per datagram, answering from the
  // listening socket; UDP-LISTEN forks per peer and loses a new peer's first
  // datagram while it hands the socket over, so it is not used here. setsid:
  // the children form a group of their own, stopped as one.
  const port = freeUdpPort();
  const socat = new Child([
    "setsid",
    "socat",
    "-d",
    "-d",
    "-t",
    "0.2",
    `UDP-RECVFROM:${port},bind=127.0.0.1,fork`,
    "EXEC:cat",
  ]);
  socat.drain();
  try {
    // It says so once its socket is bound: no probe datagram needed.
    await socat.waitForStderr(/receiving on/);
    const { code, report } = await udpLoad([
      "-p",
      String(port),
      "-c",
      "2",
      "-s",
      "512",
      "--count",
      "50",
      "--rate",
      "100",
      // A fork and an exec per datagram: on a busy machine an answer can
      // take longer than the default second, and would be counted lost.
      "--loss-timeout",
      "10",
    ]);
    assert.equal(report.sent, 100);
    assert.equal(report.received, 100, JSON.stringify(report));
    assert.equal(report.corrupted + report.duplicated + report.foreign, 0);
    assert.equal(code, 0);
  } finally {
    Deno.kill(-socat.pid, "SIGTERM");
    await socat.wait();
  }
});

Deno.test("load.ts --udp progress gives each interval's own rates, not a running average", async () => {
  let stalled = false;
  await using echo = faultyEcho(() => stalled ? "drop" : "echo");
  await using proc = new Running(LOAD, [
    "--udp",
    "-p",
    String(echo.port),
    "-c",
    "2",
    "-d",
    "3.5",
    "--loss-timeout",
    "0.2",
  ]);
  await proc.waitForStderr(/^running .* [1-9][\d,]* back\/s/);
  stalled = true;
  const out = await proc.wait();
  const lines = out.stderr.split("\n").filter((l) => l.startsWith("running"));
  assert.match(lines.at(-1) ?? "", / 0 back\/s/, out.stderr);
});

Deno.test("load.ts --udp --interval prints each interval's figures; --json-stream one object a line", async () => {
  await using echo = faultyEcho(() => "echo");
  const text = await runScript(LOAD, [
    "--udp",
    "-p",
    String(echo.port),
    "-c",
    "2",
    "-d",
    "1.2",
    "--interval",
    "0.4",
  ]);
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.split("\n").filter((l) =>
    /^\[ *[\d.]+- *[\d.]+ s\]/.test(l)
  );
  assert.equal(lines.length, 3, text.stdout);
  for (const l of lines) {
    assert.match(
      l,
      /[\d,]+ sent\/s .*[\d,]+ back\/s .*p50 [\d.]+ .*p99 [\d.]+ .* 0 errors/,
    );
  }
  const events = await jsonStream([
    "--udp",
    "-p",
    String(echo.port),
    "-c",
    "2",
    "-d",
    "1.2",
    "--interval",
    "0.4",
  ], 3);
  let sent = 0;
  for (const e of events.slice(0, 3)) {
    assert.ok(e.data.sent > 0 && e.data.received > 0);
    sent += e.data.sent;
  }
  const report = events[3]!.data;
  assert.equal(report.intervals.length, 3);
  assert.equal(sent, report.sent);
  assert.deepEqual(overPrecise(report, 3), []);
});
