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
  for (const i of interfaceAddresses()) {
    assert.equal(
      i.loopback,
      i.name === "lo" || i.address === "::1" || i.address.startsWith("127."),
    );
  }
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
