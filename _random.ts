/**
 * Reproducible pseudo-random numbers for test patterns: xorshift32
 * (Marsaglia, 2003), the one generator the load generator's byte patterns,
 * the UDP flows' payloads and the tests' random data all draw from, so a
 * failure replays from its seed.
 *
 * Private to this package.
 *
 * @module
 */

/**
 * The xorshift32 sequence from `seed` (0 is taken as 1: xorshift32 has no
 * other fixed point), as unsigned 32-bit numbers.
 *
 * @example
 * ```ts
 * const next = xorshift32(1);
 * next(); // 270369
 * ```
 */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * Fills `words` with the xorshift32 sequence from `seed`, as a pattern of
 * bytes to send and check (each word's bits, as {@linkcode xorshift32}
 * gives them).
 */
export function fillXorshift32(
  words: Int32Array | Uint32Array,
  seed: number,
): void {
  const next = xorshift32(seed);
  for (let i = 0; i < words.length; i++) words[i] = next();
}
