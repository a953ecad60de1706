/**
 * Tests of the load generator's pacer (tools/_load_pacer.ts), which wakes
 * open-loop connections near their due times: never more than EARLY ms
 * before, in order of due time, and all at once when stopped.
 *
 * @module
 */

import assert from "node:assert/strict";
import { EARLY, Pacer } from "../tools/_load_pacer.ts";
import { xorshift32 } from "../_random.ts";

Deno.test("Pacer wakes each waiter near its due time, never over EARLY ms before, in order", async () => {
  const pacer = new Pacer();
  const next = xorshift32(7);
  const start = performance.now();
  const woken: { due: number; at: number }[] = [];
  const dues = Array.from(
    { length: 200 },
    () => start + (next() % 40_000) / 1000,
  );
  await Promise.all(dues.map(async (due) => {
    await pacer.wait(due);
    woken.push({ due, at: performance.now() });
  }));
  assert.equal(woken.length, 200);
  for (const w of woken) {
    assert.ok(w.at >= w.due - EARLY, `${w.at} < ${w.due} - ${EARLY}`);
  }
  for (let i = 1; i < woken.length; i++) {
    // Woken in due order (those one timer wakes, within EARLY ms).
    assert.ok(woken[i]!.due >= woken[i - 1]!.due - EARLY);
  }
  pacer.stop();
});

Deno.test("Pacer.stop wakes every waiter at once, and later waits return at once", async () => {
  const pacer = new Pacer();
  const far = performance.now() + 60_000;
  const waits = [pacer.wait(far), pacer.wait(far + 1), pacer.wait(far - 1)];
  pacer.stop();
  await Promise.all(waits);
  let woke = false;
  pacer.at(far, () => woke = true);
  assert.equal(woke, true);
  await pacer.wait(far);
});
