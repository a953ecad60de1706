/**
 * Tests of tools/netstat.ts, the notes' "Usage Detection: netstat -a".
 *
 * Fixtures in tests/fixtures/netstat/:
 * - `proc/net/{tcp,tcp6,udp,udp6}`: the lines with inodes 5703xx were
 *   captured on this machine (Linux under gVisor) from a Deno process with
 *   TCP listeners on 127.0.0.1, ::1 and ::, an accepted connection on each
 *   family, and UDP sockets on 127.0.0.1 and ::1; the TIME_WAIT lines with
 *   inode 0 are other processes' sockets captured at the same time. The
 *   lines numbered 100 and up were written (encoded with Python's
 *   `inet_pton` and `struct`, independently of the code under test) to cover
 *   every other TCP state, non-loopback addresses (where a byte-order
 *   mistake shows), link-local and global IPv6, and IPv4-mapped IPv6.
 * - `proc/PID/{comm,fd/N}`: a copy of the part of /proc the owner scan
 *   reads; the fd entries are symlinks as the kernel shows them.
 * - `linux_netstat_anpW.txt`: captured here from net-tools 2.10 (the first
 *   nine sockets and the TIME_WAIT and port 2024 lines); the last two
 *   socket lines were written to cover program names with spaces.
 * - `darwin_netstat_an.txt`, `windows_netstat_ano.txt`: written from those
 *   systems' documented formats (no such system here to capture from).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ROOT, Running, runScript } from "./_helpers.ts";
import {
  checkPort,
  decodeProcNetAddress,
  decodeProcNetLine,
  type Endpoint,
  findSocketOwners,
  parseNetstatOutput,
  parseProcNet,
  parseStateName,
  parseTarget,
  readProcNet,
  type SocketEntry,
  type SocketListing,
  TCP_STATES,
  waitForPort,
} from "../tools/netstat.ts";

const SCRIPT = "tools/netstat.ts";
const FIXTURES = `${ROOT}tests/fixtures/netstat/`;

/**
 * Permissions per source. Deno 2.9.6 opens nothing under /proc without
 * every permission (its check_special_file), so the /proc source can only
 * be tested with -A; the test task's --allow-run already lets this process
 * start any subprocess, so this grants nothing the tests did not have.
 */
const PERMS = {
  netstat: ["--allow-run=netstat"],
  proc: ["-A"],
} as const;
type Source = keyof typeof PERMS;
const SOURCES: Source[] = ["netstat", "proc"];
const NET = ["--allow-net=127.0.0.1,[::1]"];

/** Whether ::1 can be bound here. */
const IPV6 = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

function ep(address: string, port: number): Endpoint {
  return { address, port };
}

/** A port that was free a moment ago. */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** The program name the kernel gives `pid` (`/proc/PID/comm`). */
async function comm(pid: number): Promise<string> {
  // Read by cat: this test process may not open /proc itself (see PERMS).
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/comm`] })
    .output();
  assert.ok(out.success, "cannot read /proc/PID/comm");
  return new TextDecoder().decode(out.stdout).trimEnd();
}

/** Runs the listing with `--json` from `source` and returns it. */
async function listing(
  source: Source,
  args: string[],
): Promise<SocketListing> {
  const out = await runScript(SCRIPT, ["--json", "--source", source, ...args], {
    perms: [...PERMS[source]],
  });
  assert.equal(out.code, 0, out.stderr);
  const result = JSON.parse(out.stdout) as SocketListing;
  assert.equal(result.source, source);
  return result;
}

// ---------------------------------------------------------------------------
// Decoding the kernel's tables
// ---------------------------------------------------------------------------

Deno.test("decodeProcNetAddress reverses each 32-bit word's bytes", () => {
  assert.deepEqual(
    decodeProcNetAddress("0100007F:1F90"),
    ep("127.0.0.1", 8080),
  );
  assert.deepEqual(
    decodeProcNetAddress("1401A8C0:01BB"),
    ep("192.168.1.20", 443),
  );
  assert.deepEqual(decodeProcNetAddress("00000000:0000"), ep("0.0.0.0", 0));
  assert.deepEqual(
    decodeProcNetAddress("00000000000000000000000001000000:0050"),
    ep("::1", 80),
  );
  assert.deepEqual(
    decodeProcNetAddress("0000000000000000FFFF00000100007F:0016"),
    ep("::ffff:127.0.0.1", 22),
  );
  for (const bad of ["0100007F", "100007F:1F90", "0100007G:1F90", "x:y"]) {
    assert.throws(() => decodeProcNetAddress(bad), RangeError, bad);
  }
});

/** local, remote, state, recvQueue, sendQueue, uid, inode */
type Row = [Endpoint, Endpoint, string, number, number, number, number];

function rows(sockets: SocketEntry[]): Row[] {
  return sockets.map((s) => [
    s.local,
    s.remote,
    s.state,
    s.recvQueue,
    s.sendQueue,
    s.uid!,
    s.inode!,
  ]);
}

const TCP_ROWS: Row[] = [
  // captured
  [ep("127.0.0.1", 43775), ep("0.0.0.0", 0), "LISTEN", 0, 0, 0, 570314],
  [
    ep("127.0.0.1", 43775),
    ep("127.0.0.1", 49736),
    "ESTABLISHED",
    0,
    0,
    0,
    570320,
  ],
  [
    ep("127.0.0.1", 42524),
    ep("127.0.0.1", 45391),
    "ESTABLISHED",
    0,
    0,
    0,
    570321,
  ],
  [ep("127.0.0.1", 59356), ep("127.0.0.1", 44187), "TIME_WAIT", 0, 0, 0, 0],
  // written
  [
    ep("192.168.1.20", 51000),
    ep("93.184.216.34", 443),
    "SYN_SENT",
    0,
    1,
    1000,
    700002,
  ],
  [ep("10.0.0.1", 22), ep("10.0.0.99", 60001), "SYN_RECV", 0, 0, 1000, 0],
  [
    ep("172.16.5.4", 8080),
    ep("172.16.5.9", 40000),
    "FIN_WAIT1",
    0,
    517,
    1000,
    700004,
  ],
  [
    ep("127.0.0.1", 8080),
    ep("127.0.0.1", 40001),
    "FIN_WAIT2",
    0,
    0,
    1000,
    700005,
  ],
  [ep("0.0.0.0", 0), ep("0.0.0.0", 0), "CLOSE", 0, 0, 1000, 700007],
  [
    ep("127.0.0.1", 8080),
    ep("127.0.0.1", 40002),
    "CLOSE_WAIT",
    12,
    0,
    1000,
    700008,
  ],
  [
    ep("127.0.0.1", 40003),
    ep("127.0.0.1", 8080),
    "LAST_ACK",
    0,
    1,
    1000,
    700009,
  ],
  [
    ep("127.0.0.1", 40004),
    ep("127.0.0.1", 8080),
    "CLOSING",
    0,
    1,
    1000,
    700011,
  ],
  [
    ep("127.0.0.1", 8080),
    ep("127.0.0.1", 40005),
    "NEW_SYN_RECV",
    0,
    0,
    1000,
    0,
  ],
  [
    ep("0.0.0.0", 40006),
    ep("0.0.0.0", 0),
    "BOUND_INACTIVE",
    0,
    0,
    1000,
    700013,
  ],
];

const TCP6_ROWS: Row[] = [
  // captured
  [ep("::1", 32847), ep("::", 0), "LISTEN", 0, 0, 0, 570315],
  [ep("::", 45391), ep("::", 0), "LISTEN", 0, 0, 0, 570316],
  [
    ep("::ffff:127.0.0.1", 45391),
    ep("::ffff:127.0.0.1", 42524),
    "ESTABLISHED",
    0,
    0,
    0,
    570322,
  ],
  // written
  [
    ep("2001:db8::1", 80),
    ep("2001:db8::1:0:0:1", 50000),
    "ESTABLISHED",
    0,
    0,
    1000,
    700101,
  ],
  [
    ep("fe80::1c2d:3eff:fe4f:5a6b", 22),
    ep("::", 0),
    "LISTEN",
    3,
    0,
    1000,
    700102,
  ],
  [
    ep("::ffff:192.168.1.20", 8443),
    ep("::ffff:10.1.2.3", 51515),
    "TIME_WAIT",
    0,
    0,
    1000,
    0,
  ],
];

Deno.test("parseProcNet decodes captured and written /proc/net/tcp lines to the known sockets", async () => {
  const text = await Deno.readTextFile(`${FIXTURES}proc/net/tcp`);
  const sockets = parseProcNet(text, "tcp");
  assert.ok(sockets.every((s) => s.protocol === "tcp"));
  assert.deepEqual(rows(sockets), TCP_ROWS);
});

Deno.test("parseProcNet decodes /proc/net/tcp6: ::1, ::, IPv4-mapped, global, link-local", async () => {
  const text = await Deno.readTextFile(`${FIXTURES}proc/net/tcp6`);
  const sockets = parseProcNet(text, "tcp6");
  assert.ok(sockets.every((s) => s.protocol === "tcp6"));
  assert.deepEqual(rows(sockets), TCP6_ROWS);
});

Deno.test("the fixtures cover every TCP state, and each decodes to its name", () => {
  const seen = new Set([...TCP_ROWS, ...TCP6_ROWS].map((row) => row[2]));
  assert.deepEqual([...seen].sort(), Object.values(TCP_STATES).sort());
  const line = (st: string) =>
    `0: 0100007F:1F90 00000000:0000 ${st} 00000000:00000000 00:00000000 00000000 0 0 1 1`;
  for (const [code, name] of Object.entries(TCP_STATES)) {
    const st = Number(code).toString(16).toUpperCase().padStart(2, "0");
    assert.equal(decodeProcNetLine(line(st), "tcp").state, name);
  }
  assert.equal(decodeProcNetLine(line("3F"), "tcp").state, "UNKNOWN(0x3F)");
});

Deno.test("parseProcNet decodes UDP: unconnected as UNCONN, connected as ESTABLISHED", async () => {
  const udp = parseProcNet(
    await Deno.readTextFile(`${FIXTURES}proc/net/udp`),
    "udp",
  );
  assert.deepEqual(rows(udp), [
    [ep("127.0.0.1", 59356), ep("0.0.0.0", 0), "UNCONN", 0, 0, 0, 570317],
    [
      ep("127.0.0.1", 5353),
      ep("127.0.0.53", 53),
      "ESTABLISHED",
      0,
      0,
      1000,
      700201,
    ],
  ]);
  const udp6 = parseProcNet(
    await Deno.readTextFile(`${FIXTURES}proc/net/udp6`),
    "udp6",
  );
  assert.deepEqual(rows(udp6), [
    [ep("::1", 56313), ep("::", 0), "UNCONN", 0, 0, 0, 570318],
  ]);
});

Deno.test("decodeProcNetLine rejects a line not in the kernel's format, quoting it", () => {
  const v4 =
    "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 4242 1";
  assert.equal(decodeProcNetLine(v4, "tcp").inode, 4242);
  assert.throws(
    () => decodeProcNetLine(v4, "tcp6"),
    /IPv6.*expected|expected.*IPv6/,
  );
  assert.throws(() => decodeProcNetLine("garbage", "tcp"), /"garbage"/);
  assert.throws(
    () => decodeProcNetLine(v4.replace("0A", "ZZ"), "tcp"),
    RangeError,
  );
});

Deno.test("readProcNet and findSocketOwners, on a copy of /proc, find owners by socket inode", async () => {
  const sockets = await readProcNet(`${FIXTURES}proc/net`);
  assert.equal(sockets.length, TCP_ROWS.length + TCP6_ROWS.length + 3);
  const inodes = new Set(sockets.map((s) => s.inode!).filter((i) => i > 0));
  const scan = await findSocketOwners(inodes, undefined, `${FIXTURES}proc`);
  // 570314 is held by two processes (as after a fork), lowest pid first.
  assert.deepEqual(scan.owners.get(570314), [
    { pid: 15116, program: "deno" },
    { pid: 15300, program: "deno" },
  ]);
  assert.deepEqual(scan.owners.get(700002), [
    { pid: 15200, program: "epoll_echo" },
  ]);
  for (const inode of [570315, 570316, 570317, 570318, 570320, 570322]) {
    assert.deepEqual(scan.owners.get(inode), [{ pid: 15116, program: "deno" }]);
  }
  // Nothing holds these: no owner rather than a wrong one.
  assert.equal(scan.owners.get(700004), undefined);
  assert.equal(scan.inspected, 3);
  assert.deepEqual(scan.unreadable, []);

  const one = await findSocketOwners(inodes, [15200, 99999], `${FIXTURES}proc`);
  assert.deepEqual([...one.owners.keys()], [700002]);
  assert.equal(one.inspected, 1, "a pid that does not exist is skipped");
});

// ---------------------------------------------------------------------------
// Parsing the platforms' netstat
// ---------------------------------------------------------------------------

function brief(s: SocketEntry) {
  return [s.protocol, s.local, s.remote, s.state, s.processes];
}

Deno.test("parseNetstatOutput reads Linux netstat -anpW, owners included", async () => {
  const text = await Deno.readTextFile(`${FIXTURES}linux_netstat_anpW.txt`);
  const sockets = parseNetstatOutput(text, "linux");
  const deno = [{ pid: 15116, program: "deno" }];
  assert.deepEqual(sockets.map(brief), [
    ["tcp", ep("127.0.0.1", 43775), ep("0.0.0.0", 0), "LISTEN", deno],
    [
      "tcp",
      ep("127.0.0.1", 43775),
      ep("127.0.0.1", 49736),
      "ESTABLISHED",
      deno,
    ],
    [
      "tcp",
      ep("127.0.0.1", 42524),
      ep("127.0.0.1", 45391),
      "ESTABLISHED",
      deno,
    ],
    [
      "tcp",
      ep("127.0.0.1", 49736),
      ep("127.0.0.1", 43775),
      "ESTABLISHED",
      deno,
    ],
    ["tcp6", ep("::1", 32847), ep("::", 0), "LISTEN", deno],
    ["tcp6", ep("::", 45391), ep("::", 0), "LISTEN", deno],
    // net-tools shows an IPv4-mapped address without its ::ffff: prefix
    [
      "tcp6",
      ep("127.0.0.1", 45391),
      ep("127.0.0.1", 42524),
      "ESTABLISHED",
      deno,
    ],
    ["udp", ep("127.0.0.1", 59356), ep("0.0.0.0", 0), "UNCONN", deno],
    ["udp6", ep("::1", 56313), ep("::", 0), "UNCONN", deno],
    ["tcp", ep("127.0.0.1", 57936), ep("127.0.0.1", 46163), "TIME_WAIT", []],
    ["tcp", ep("0.0.0.0", 2024), ep("0.0.0.0", 0), "LISTEN", []],
    ["tcp6", ep("fe80::1c2d:3eff:fe4f:5a6b", 22), ep("::", 0), "LISTEN", [
      { pid: 812, program: "sshd: /usr/sbin" },
    ]],
    ["udp", ep("127.0.0.1", 5353), ep("127.0.0.53", 53), "ESTABLISHED", [
      { pid: 901, program: "Web Content" },
    ]],
  ]);
  assert.ok(sockets.every((s) => s.inode === null && s.uid === null));
});

Deno.test("parseNetstatOutput reads the macOS and BSD form (dots, tcp46, *.*)", async () => {
  const text = await Deno.readTextFile(`${FIXTURES}darwin_netstat_an.txt`);
  const sockets = parseNetstatOutput(text, "darwin");
  assert.deepEqual(sockets.map(brief), [
    ["tcp", ep("127.0.0.1", 8080), ep("127.0.0.1", 52344), "ESTABLISHED", []],
    ["tcp", ep("127.0.0.1", 52344), ep("127.0.0.1", 8080), "ESTABLISHED", []],
    ["tcp", ep("127.0.0.1", 8080), ep("0.0.0.0", 0), "LISTEN", []],
    ["tcp6", ep("::1", 8080), ep("::", 0), "LISTEN", []],
    ["tcp6", ep("::", 5000), ep("::", 0), "LISTEN", []],
    [
      "tcp",
      ep("192.168.1.20", 51000),
      ep("93.184.216.34", 443),
      "FIN_WAIT1",
      [],
    ],
    [
      "tcp",
      ep("192.168.1.20", 51001),
      ep("93.184.216.34", 443),
      "TIME_WAIT",
      [],
    ],
    ["tcp6", ep("fe80::1%lo0", 22), ep("fe80::1%lo0", 60000), "SYN_RECV", []],
    ["udp", ep("0.0.0.0", 5353), ep("0.0.0.0", 0), "UNCONN", []],
    ["udp6", ep("::", 0), ep("::", 0), "UNCONN", []],
  ]);
  assert.equal(sockets[5]!.sendQueue, 517);
});

Deno.test("parseNetstatOutput reads Windows netstat -ano (brackets, LISTENING, pids)", async () => {
  const text = await Deno.readTextFile(`${FIXTURES}windows_netstat_ano.txt`);
  const sockets = parseNetstatOutput(text, "windows");
  const pid = (n: number) => [{ pid: n, program: null }];
  assert.deepEqual(sockets.map(brief), [
    ["tcp", ep("0.0.0.0", 135), ep("0.0.0.0", 0), "LISTEN", pid(1004)],
    [
      "tcp",
      ep("127.0.0.1", 8080),
      ep("127.0.0.1", 52344),
      "ESTABLISHED",
      pid(4242),
    ],
    [
      "tcp",
      ep("192.168.1.20", 51000),
      ep("93.184.216.34", 443),
      "CLOSE_WAIT",
      pid(4242),
    ],
    ["tcp6", ep("::", 135), ep("::", 0), "LISTEN", pid(1004)],
    ["tcp6", ep("::1", 8080), ep("::", 0), "LISTEN", pid(4242)],
    [
      "tcp6",
      ep("fe80::1c2d:3eff:fe4f:5a6b%4", 22),
      ep("fe80::1%4", 60000),
      "SYN_RECV",
      pid(812),
    ],
    ["udp", ep("0.0.0.0", 5353), ep("0.0.0.0", 0), "UNCONN", pid(2212)],
    ["udp6", ep("::1", 1900), ep("::", 0), "UNCONN", pid(3300)],
  ]);
});

Deno.test("parseStateName takes any case and dashes; an unknown name is a RangeError", () => {
  assert.equal(parseStateName("listen"), "LISTEN");
  assert.equal(parseStateName("time-wait"), "TIME_WAIT");
  assert.equal(parseStateName("Fin_Wait1"), "FIN_WAIT1");
  assert.equal(parseStateName("unconn"), "UNCONN");
  assert.equal(parseStateName("LISTENING"), "LISTEN");
  assert.equal(parseStateName("fin-wait-1"), "FIN_WAIT1");
  assert.throws(() => parseStateName("LISTENS"), /Unknown state "LISTENS"/);
});

Deno.test("parseTarget takes HOST:PORT and [IPv6]:PORT, and explains what is wrong", () => {
  assert.deepEqual(parseTarget("127.0.0.1:8080"), {
    hostname: "127.0.0.1",
    port: 8080,
  });
  assert.deepEqual(parseTarget("[::1]:22"), { hostname: "::1", port: 22 });
  assert.deepEqual(parseTarget("localhost:1"), {
    hostname: "localhost",
    port: 1,
  });
  assert.throws(() => parseTarget("::1:22"), /brackets, as \[::1\]:8080/);
  assert.throws(
    () => parseTarget("[::1]42587"),
    /^RangeError: Cannot parse target "\[::1\]42587": no colon between "\]" and the port, as \[::1\]:8080$/,
  );
  assert.throws(() => parseTarget("[::1]"), /expected HOST:PORT/);
  assert.throws(() => parseTarget("[]:80"), /expected HOST:PORT/);
  assert.throws(() => parseTarget("[::1:80"), /expected HOST:PORT/);
  assert.throws(
    () => parseTarget("a:0", "--check"),
    /^RangeError: Cannot parse --check "a:0"/,
  );
  assert.throws(() => parseTarget("example.com"), /expected HOST:PORT/);
  assert.throws(() => parseTarget("127.0.0.1:0"), /1 to 65535/);
  assert.throws(() => parseTarget("127.0.0.1:70000"), /1 to 65535/);
});

// ---------------------------------------------------------------------------
// Live sockets, from both sources
// ---------------------------------------------------------------------------

for (const source of SOURCES) {
  Deno.test(`netstat (${source}): a listener on an ephemeral port is in LISTEN with this process's pid and program name`, async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    const result = await listing(source, ["--port", String(port)]);
    const mine = result.sockets.filter((s) => s.state === "LISTEN");
    assert.equal(mine.length, 1, JSON.stringify(result.sockets));
    assert.equal(mine[0]!.protocol, "tcp");
    assert.deepEqual(mine[0]!.local, ep("127.0.0.1", port));
    assert.deepEqual(mine[0]!.remote, ep("0.0.0.0", 0));
    assert.deepEqual(mine[0]!.processes, [
      { pid: Deno.pid, program: await comm(Deno.pid) },
    ]);
  });

  Deno.test(`netstat (${source}): an established connection shows both ends, owned by this process`, async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    using client = await Deno.connect({ hostname: "127.0.0.1", port });
    using _accepted = await listener.accept();
    const clientPort = client.localAddr.port;
    const result = await listing(source, [
      "--port",
      String(port),
      "--state",
      "established",
    ]);
    const owner = [{ pid: Deno.pid, program: await comm(Deno.pid) }];
    assert.deepEqual(
      result.sockets.map((s) => [s.protocol, s.local, s.remote, s.state]),
      [
        // sorted by local port: the listener's port is the lower one or not
        ...[
          ["tcp", ep("127.0.0.1", port), ep("127.0.0.1", clientPort)],
          ["tcp", ep("127.0.0.1", clientPort), ep("127.0.0.1", port)],
        ].sort((a, b) => (a[1] as Endpoint).port - (b[1] as Endpoint).port).map(
          (row) => [...row, "ESTABLISHED"],
        ),
      ],
    );
    for (const s of result.sockets) assert.deepEqual(s.processes, owner);
  });

  Deno.test(`netstat (${source}): --port, --state, -l, -t and -u filter`, async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    using _client = await Deno.connect({ hostname: "127.0.0.1", port });
    using _accepted = await listener.accept();
    const udp = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    // DatagramConn has no [Symbol.dispose]: closed in the finally below.
    try {
      const udpPort = (udp.addr as Deno.NetAddr).port;

      const all = await listing(source, ["--port", String(port)]);
      assert.ok(all.sockets.length >= 3, JSON.stringify(all.sockets));
      for (const s of all.sockets) {
        assert.ok(s.local.port === port || s.remote.port === port);
      }
      const listen = await listing(source, [
        "--port",
        String(port),
        "--state",
        "LISTEN",
      ]);
      assert.deepEqual(listen.sockets.map((s) => s.local), [
        ep("127.0.0.1", port),
      ]);
      const l = await listing(source, ["-l", "--port", String(port)]);
      assert.deepEqual(l.sockets, listen.sockets);
      const established = await listing(source, [
        "--port",
        String(port),
        "--state",
        "Established",
      ]);
      assert.equal(established.sockets.length, 2);
      const waiting = await listing(source, [
        "--port",
        String(port),
        "--state",
        "time-wait",
      ]);
      assert.ok(waiting.sockets.every((s) => s.state === "TIME_WAIT"));

      const u = await listing(source, ["-u", "-l", "--port", String(udpPort)]);
      assert.deepEqual(
        u.sockets.map((
          s,
        ) => [s.protocol, s.local, s.state, s.processes[0]?.pid]),
        [["udp", ep("127.0.0.1", udpPort), "UNCONN", Deno.pid]],
      );
      const t = await listing(source, ["-t", "--port", String(udpPort)]);
      assert.ok(t.sockets.every((s) => s.protocol.startsWith("tcp")));
      const both = await listing(source, [
        "-t",
        "-u",
        "--port",
        String(udpPort),
      ]);
      assert.ok(both.sockets.some((s) => s.protocol === "udp"));
    } finally {
      udp.close();
    }
  });

  Deno.test(`netstat (${source}): --pid keeps only that process's sockets`, async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    const mine = await listing(source, ["--pid", String(Deno.pid), "-t", "-l"]);
    assert.ok(mine.sockets.some((s) => s.local.port === port));
    for (const s of mine.sockets) {
      assert.ok(s.processes.some((p) => p.pid === Deno.pid));
    }
    // Process 1 (the sandbox's init) does not hold this listener.
    const other = await listing(source, ["--pid", "1", "--port", String(port)]);
    assert.deepEqual(other.sockets, []);
  });

  Deno.test({
    name:
      `netstat (${source}): an IPv6 listener on ::1 shows as [::1]:PORT in the table`,
    ignore: !IPV6,
    fn: async () => {
      using listener = Deno.listen({ hostname: "::1", port: 0 });
      const port = listener.addr.port;
      const out = await runScript(
        SCRIPT,
        ["--source", source, "-l", "--port", String(port)],
        { perms: [...PERMS[source]] },
      );
      assert.equal(out.code, 0, out.stderr);
      const lines = out.stdout.trimEnd().split("\n");
      assert.match(
        lines[0]!,
        source === "proc" ? /from \/proc\/net/ : /from netstat -anpW/,
      );
      assert.match(
        lines[1]!,
        /^Proto\s+Recv-Q\s+Send-Q\s+Local Address\s+Foreign Address\s+State\s+PID\/Program$/,
      );
      const program = await comm(Deno.pid);
      const row = lines.find((line) => line.includes(`[::1]:${port}`));
      assert.match(
        row ?? "",
        new RegExp(
          `^tcp6\\s+0\\s+0\\s+\\[::1\\]:${port}\\s+\\[::\\]:\\*\\s+LISTEN\\s+${Deno.pid}/${program}$`,
        ),
      );
    },
  });
}

/** Whether this runs as root with setpriv, so a test can drop to nobody. */
const CAN_DROP_ROOT = (() => {
  try {
    // `id -u`, not Deno.uid(): the test task does not grant --allow-sys=uid.
    const id = new Deno.Command("id", { args: ["-u"] }).outputSync();
    const setpriv = new Deno.Command("setpriv", { args: ["--version"] })
      .outputSync();
    return new TextDecoder().decode(id.stdout).trim() === "0" &&
      setpriv.success;
  } catch {
    return false;
  }
})();

for (const source of SOURCES) {
  Deno.test({
    name:
      `netstat (${source}) as another user: others' sockets show no owner, and a note says why`,
    ignore: !CAN_DROP_ROOT,
    fn: async () => {
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      const out = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "env",
          // nobody may not read root's Deno cache; Deno runs without one.
          "HOME=/nonexistent",
          "DENO_DIR=/nonexistent/deno",
          Deno.execPath(),
          "run",
          "--quiet",
          ...PERMS[source],
          SCRIPT,
          "--json",
          "--source",
          source,
          "--port",
          String(port),
        ],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const result = JSON.parse(new TextDecoder().decode(out.stdout));
      const mine = result.sockets.filter((s: SocketEntry) =>
        s.state === "LISTEN"
      );
      assert.equal(mine.length, 1);
      assert.deepEqual(mine[0].processes, []);
      assert.ok(
        result.notes.some((note: string) =>
          source === "proc"
            ? /^\d+ process(es)? could not be inspected \(permission denied\)/
              .test(note)
            : /^netstat: Not all processes could be identified/.test(note)
        ),
        JSON.stringify(result.notes),
      );
    },
  });
}

Deno.test("netstat: where neither /proc nor netstat may be used, one line and exit 1", async () => {
  const out = await runScript(SCRIPT, [], { perms: [] });
  assert.equal(out.code, 1);
  assert.equal(
    out.stderr,
    "error: Cannot list sockets: /proc: Deno opens /proc only with -A " +
      "(every permission); running netstat -anpW needs --allow-run=netstat\n",
  );
  assert.equal(out.stdout, "");
  const proc = await runScript(SCRIPT, ["--source", "proc"], {
    perms: ["--allow-run=netstat"],
  });
  assert.equal(proc.code, 1);
  assert.match(proc.stderr, /^error: Cannot read \/proc\/net\/tcp: .*-A.*\n$/);
});

Deno.test("netstat: auto falls back to netstat and says which source it used", async () => {
  const out = await runScript(SCRIPT, ["-l", "--port", "1"], {
    perms: [...PERMS.netstat],
  });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^\d+ sockets? from netstat -anpW\n/);
  assert.match(
    out.stdout,
    /note: Not read from \/proc: Deno opens \/proc only with -A/,
  );
});

// ---------------------------------------------------------------------------
// --wait and --check
// ---------------------------------------------------------------------------

Deno.test("waitForPort resolves once a listener appears after the first failed attempt", async () => {
  const port = freePort();
  let listener: Deno.TcpListener | undefined;
  try {
    const up = await waitForPort({
      port,
      timeout: 20_000,
      onAttempt({ attempt, result }) {
        assert.equal(result.status, "refused");
        if (attempt === 1) {
          listener = Deno.listen({ hostname: "127.0.0.1", port });
        }
      },
    });
    assert.ok(up.attempts >= 2, `attempts ${up.attempts}`);
    assert.equal(up.port, port);
  } finally {
    listener?.close();
  }
});

Deno.test("waitForPort rejects with TimedOut when nothing listens", async () => {
  const port = freePort();
  await assert.rejects(
    waitForPort({ port, timeout: 200 }),
    (error: Error) =>
      error instanceof Deno.errors.TimedOut &&
      new RegExp(
        `127\\.0\\.0\\.1:${port} within 0\\.2 s \\(\\d+ attempts, last: connection refused\\)`,
      )
        .test(error.message),
  );
});

Deno.test("checkPort says open for a listener and refused for a closed port", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = await checkPort({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  assert.equal(open.status, "open");
  assert.ok(open.ms >= 0);
  const closed = await checkPort({ hostname: "127.0.0.1", port: freePort() });
  assert.equal(closed.status, "refused");
  assert.equal(closed.reason, "connection refused");
});

Deno.test("checkPort says no answer when the SYN goes unanswered (a full listen backlog)", async () => {
  // A listener that never accepts: once its backlog is full (somaxconn,
  // 4096 at most on Linux), the kernel drops the next SYN.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const target = { hostname: "127.0.0.1", port: listener.addr.port };
  let result = await checkPort(target, { timeout: 300 });
  for (let i = 0; i < 5000 && result.status === "open"; i++) {
    result = await checkPort(target, { timeout: 300 });
  }
  assert.equal(result.status, "no answer");
  assert.equal(result.reason, "no answer within 0.3 s");
});

Deno.test("netstat --wait returns 0 when a listener appears later", async () => {
  const port = freePort();
  await using waiter = new Running(SCRIPT, [
    "--wait",
    String(port),
    "--timeout",
    "30",
  ], { perms: NET });
  // Start the listener only once the tool reported its first failed probe.
  const first = await waiter.waitFor(/^waiting for /);
  assert.equal(
    first,
    `waiting for 127.0.0.1:${port} (connection refused; timeout 30 s)`,
  );
  using _listener = Deno.listen({ hostname: "127.0.0.1", port });
  const out = await waiter.wait();
  assert.equal(out.code, 0, out.stderr);
  assert.match(
    out.stdout,
    new RegExp(
      `\\n127\\.0\\.0\\.1:${port} accepts connections \\(after \\d+\\.\\d\\d s, \\d+ attempts\\)$`,
    ),
  );
  assert.equal(out.stderr, "");
});

Deno.test("netstat --wait exits 1 with one line when nothing listens in time", async () => {
  const port = freePort();
  const out = await runScript(SCRIPT, [
    "--wait",
    String(port),
    "--timeout",
    "0.3",
  ], { perms: NET });
  assert.equal(out.code, 1);
  assert.match(
    out.stderr,
    new RegExp(
      `^error: Nothing accepted connections on 127\\.0\\.0\\.1:${port} within 0\\.3 s \\(\\d+ attempts, last: connection refused\\)\\n$`,
    ),
  );
});

Deno.test("netstat --wait ends with one line, exit 1, on SIGINT", async () => {
  const port = freePort();
  await using waiter = new Running(SCRIPT, ["--wait", String(port)], {
    perms: NET,
  });
  await waiter.waitFor(/^waiting for /);
  const out = await waiter.stop("SIGINT");
  assert.equal(out.code, 1);
  assert.equal(
    out.stderr,
    `error: Interrupted while waiting for 127.0.0.1:${port}\n`,
  );
});

Deno.test("netstat --wait on an open port returns at once; --json reports it", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const out = await runScript(SCRIPT, ["--wait", String(port), "--json"], {
    perms: NET,
  });
  assert.equal(out.code, 0, out.stderr);
  const result = JSON.parse(out.stdout);
  assert.equal(result.up, true);
  assert.equal(result.attempts, 1);
  assert.equal(result.port, port);
});

Deno.test("netstat --check: exit 0 when all are open, 1 with open and refused rows otherwise", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = `127.0.0.1:${listener.addr.port}`;
  const closed = `127.0.0.1:${freePort()}`;
  const ok = await runScript(SCRIPT, ["--check", open], { perms: NET });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`^${open}  open  \\d+(\\.\\d+)? ms\\n$`));
  const bad = await runScript(SCRIPT, ["--check", open, "--check", closed], {
    perms: NET,
  });
  assert.equal(bad.code, 1);
  const lines = bad.stdout.trimEnd().split("\n");
  assert.match(lines[0]!, new RegExp(`^${open}\\s+open\\s+\\d`));
  assert.match(lines[1]!, new RegExp(`^${closed}\\s+refused\\s+\\d`));
  assert.equal(bad.stderr, "error: 1 of 2 targets not open\n");
  const json = await runScript(SCRIPT, ["--check", closed, "--json"], {
    perms: NET,
  });
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout);
  assert.equal(report.allOpen, false);
  assert.equal(report.results[0].status, "refused");
});

Deno.test({
  name: "netstat --check [::1]:PORT connects over IPv6",
  ignore: !IPV6,
  fn: async () => {
    using listener = Deno.listen({ hostname: "::1", port: 0 });
    const out = await runScript(SCRIPT, [
      "--check",
      `[::1]:${listener.addr.port}`,
    ], { perms: NET });
    assert.equal(out.code, 0, out.stderr);
    assert.match(
      out.stdout,
      new RegExp(`^\\[::1\\]:${listener.addr.port}  open  `),
    );
  },
});

Deno.test({
  name: "netstat --wait --host ::1 waits on IPv6 and names [::1]:PORT",
  ignore: !IPV6,
  fn: async () => {
    using listener = Deno.listen({ hostname: "::1", port: 0 });
    const port = listener.addr.port;
    const out = await runScript(SCRIPT, [
      "--wait",
      String(port),
      "--host",
      "::1",
    ], {
      perms: NET,
    });
    assert.equal(out.code, 0, out.stderr);
    assert.match(
      out.stdout,
      new RegExp(
        `^\\[::1\\]:${port} accepts connections \\(after [\\d.]+ s, 1 attempt\\)\n$`,
      ),
    );
  },
});

Deno.test("netstat --check and --wait without --allow-net: one line, exit 1", async () => {
  for (const args of [["--check", "127.0.0.1:1"], ["--wait", "1"]]) {
    const out = await runScript(SCRIPT, args, { perms: [] });
    assert.equal(out.code, 1);
    assert.match(
      out.stderr,
      /^error: Requires net access to "127\.0\.0\.1:1".*--allow-net.*\n$/,
    );
  }
});

// ---------------------------------------------------------------------------
// Usage mistakes
// ---------------------------------------------------------------------------

Deno.test("netstat --help prints usage and exits 0", async () => {
  const out = await runScript(SCRIPT, ["--help"], { perms: [] });
  assert.equal(out.code, 0);
  assert.match(out.stdout, /^Usage: tools\/netstat\.ts \[options\]/);
  assert.match(out.stdout, /--wait PORT/);
  assert.match(out.stdout, /--allow-run=netstat/);
});

Deno.test("netstat usage mistakes are one line on stderr, exit 2", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^error: Unknown option '--bogus' \(see --help\)$/],
    [
      ["--state", "bogus"],
      /^error: Cannot parse --state "bogus": expected one of ESTABLISHED, .*, UNCONN$/,
    ],
    [
      ["--port", "70000"],
      /^error: Cannot parse --port "70000": expected 1 to 65535$/,
    ],
    [["--port", "0"], /^error: Cannot parse --port "0": expected 1 to 65535$/],
    [["--pid", "x"], /^error: Cannot parse --pid "x"/],
    [["--source", "kernel"], /^error: Cannot use --source "kernel"/],
    [["--wait", "0"], /^error: Cannot parse --wait "0": expected 1 to 65535$/],
    [
      ["--wait", "80", "--timeout", "soon"],
      /^error: Cannot parse --timeout "soon"/,
    ],
    [["--check", "::1:80"], /brackets, as \[::1\]:8080$/],
    [["--check", "127.0.0.1:1", "--wait", "80"], /either --wait or --check/],
    [["--wait", "80", "-l"], /--listening filters the listing/],
    [["--timeout", "3"], /--timeout applies to --wait and --check only/],
    [["--host", "::1"], /--host applies to --wait only/],
  ];
  for (const [args, pattern] of cases) {
    await t.step(args.join(" "), async () => {
      const out = await runScript(SCRIPT, args, { perms: [] });
      assert.equal(out.code, 2, out.stderr);
      assert.equal(out.stderr.split("\n").length, 2, out.stderr);
      assert.match(out.stderr.trimEnd(), pattern);
      assert.equal(out.stdout, "");
    });
  }
});
