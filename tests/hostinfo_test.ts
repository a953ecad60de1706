import assert from "node:assert/strict";
import { hostInfo, interfaceAddresses, isLoopback } from "../tools/hostinfo.ts";
import { runScript } from "./_helpers.ts";

Deno.test("hostinfo resolves localhost to a loopback address", async () => {
  const info = await hostInfo("localhost");
  assert.equal(info.error, undefined);
  assert.ok(info.addresses.length > 0);
  assert.ok(
    info.addresses.some((a) => isLoopback(a.address)),
    JSON.stringify(info.addresses),
  );
});

Deno.test("hostinfo lists the same interfaces as Deno.networkInterfaces()", () => {
  const ours = interfaceAddresses().map((i) =>
    `${i.name} ${i.family} ${i.cidr}`
  );
  const deno = Deno.networkInterfaces().map((i) =>
    `${i.name} ${i.family} ${i.cidr}`
  );
  assert.deepEqual(ours, deno);
  // Linux's loopback interface: every address on it is marked loopback.
  const lo = interfaceAddresses().filter((i) => i.name === "lo");
  assert.ok(lo.some((i) => i.address === "127.0.0.1"), JSON.stringify(lo));
  assert.ok(lo.every((i) => i.loopback), JSON.stringify(lo));
});

Deno.test("isLoopback: 127.0.0.0/8, ::1 and mapped 127/8 in any spelling; nothing else", () => {
  for (
    const address of [
      "127.0.0.1",
      "127.255.255.254",
      "::1",
      "0:0:0:0:0:0:0:1",
      "0000:0000:0000:0000:0000:0000:0000:0001",
      "::ffff:127.0.0.1",
      "::FFFF:127.1.2.3",
      "::ffff:7f00:1",
      "::1%lo",
    ]
  ) assert.equal(isLoopback(address), true, address);
  for (
    const address of [
      "128.0.0.1",
      "10.127.0.1",
      "1127.0.0.1",
      "127.0.0",
      "localhost",
      "::2",
      "::",
      "fe80::1%eth0",
      "::ffff:128.0.0.1",
      "::127.0.0.1",
      "::ffff:10.0.0.1",
      "",
    ]
  ) assert.equal(isLoopback(address), false, address);
});

Deno.test("hostinfo reverse-resolves 127.0.0.1 through /etc/hosts", async () => {
  const info = await hostInfo("127.0.0.1");
  assert.deepEqual(info.addresses, [{ address: "127.0.0.1", family: "IPv4" }]);
  assert.equal(typeof info.reverse, "string");
  assert.ok(info.reverse!.length > 0);
});

Deno.test("hostinfo --json prints one object with every field", async () => {
  const out = await runScript("tools/hostinfo.ts", ["--json", "localhost"]);
  assert.equal(out.code, 0, out.stderr);
  const info = JSON.parse(out.stdout);
  assert.equal(info.query, "localhost");
  assert.equal(info.hostname, Deno.hostname());
  assert.ok(
    info.addresses.some((a: { address: string }) => isLoopback(a.address)),
  );
  assert.equal(info.interfaces.length, Deno.networkInterfaces().length);
});

Deno.test("hostinfo prints the host name and the loopback interface as text", async () => {
  const out = await runScript("tools/hostinfo.ts", []);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, new RegExp(`^host name: ${Deno.hostname()}\n`));
  assert.match(out.stdout, /\n {2}lo +IPv4 +127\.0\.0\.1\/8 +loopback\n/);
});

Deno.test("hostinfo with a name that does not resolve says so, exit 1", async () => {
  const out = await runScript("tools/hostinfo.ts", ["no-such-host.invalid"]);
  assert.equal(out.code, 1);
  assert.match(out.stdout, /no-such-host\.invalid resolves to: /);
});

Deno.test("hostinfo lists an address as itself, with its reverse name or none", async () => {
  for (const query of ["::1", "[::1]"]) {
    const info = await hostInfo(query);
    assert.equal(info.error, undefined, query);
    assert.deepEqual(info.addresses, [{ address: "::1", family: "IPv6" }]);
    // A name where /etc/hosts gives ::1 one, else none.
    assert.ok(info.reverse === null || typeof info.reverse === "string");
  }
  const out = await runScript("tools/hostinfo.ts", ["[::1]"]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(
    out.stdout,
    /\n\[::1\] resolves to:\n {2}::1 {2}\(IPv6\)\n\[::1\] reverse-resolves to: (no reverse name|\S+)\n/,
  );
  // TEST-NET-1 has no name; a resolver that cannot be reached is an error.
  const test = await runScript("tools/hostinfo.ts", ["192.0.2.2"]);
  assert.match(
    test.stdout,
    /\n192\.0\.2\.2 resolves to:\n {2}192\.0\.2\.2 {2}\(IPv4\)\n192\.0\.2\.2 reverse-resolves to: /,
  );
  if (test.code === 0) assert.match(test.stdout, /to: no reverse name\n/);
});

Deno.test("hostinfo says which permission a refused lookup needs, exit 1", async () => {
  const perms = ["--allow-sys=hostname,networkInterfaces"];
  const name = await runScript("tools/hostinfo.ts", ["localhost"], { perms });
  assert.equal(name.code, 1);
  assert.match(
    name.stdout,
    /\nlocalhost resolves to: not permitted \(EPERM\): run with --allow-net or --allow-net=localhost\n/,
  );
  const address = await runScript("tools/hostinfo.ts", ["::1"], { perms });
  assert.equal(address.code, 1);
  assert.match(
    address.stdout,
    /\n::1 reverse-resolves to: not permitted \(EPERM\): run with --allow-net or --allow-net=\[::1\]\n/,
  );
});
