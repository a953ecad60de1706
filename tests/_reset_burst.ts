/**
 * `deno run --allow-net=127.0.0.1 tests/_reset_burst.ts PORT COUNT`: the
 * {@linkcode resetBurst} of the test helpers as a process of its own, so a
 * test can run it with `outputSync()` and keep its own event loop (and an
 * in-process server's accept loop) still until every reset has landed.
 *
 * @module
 */

import { resetBurst } from "./_helpers.ts";

if (import.meta.main) {
  await resetBurst(Number(Deno.args[0]), Number(Deno.args[1]));
}
