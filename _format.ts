/**
 * How every script prints numbers and tables: counts with thousands
 * separators, and rows of cells aligned in columns. One place, so a count
 * and a table read the same in the load generator, netstat and the bench.
 *
 * Private to this package.
 *
 * @module
 */

/**
 * `n` rounded to a whole number, with thousands separators.
 *
 * @example
 * ```ts
 * formatInt(1234567.6); // "1,234,568"
 * ```
 */
export function formatInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/**
 * Rows of cells as lines of text, each column as wide as its widest cell
 * and two spaces apart; a column `right` says is right-aligned (numbers),
 * the others left-aligned. The last column is not padded on the left, so
 * lines carry no trailing spaces.
 *
 * @example
 * ```ts
 * alignColumns([["server", "msg/s"], ["loop", "1,234"]], (i) => i > 0);
 * // ["server  msg/s", "loop    1,234"]
 * ```
 */
export function alignColumns(
  rows: readonly (readonly string[])[],
  right: (column: number) => boolean = () => false,
): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, cell.length));
  }
  return rows.map((row) =>
    row.map((cell, i) => {
      const w = widths[i]!;
      if (right(i)) return cell.padStart(w);
      return i === row.length - 1 ? cell : cell.padEnd(w);
    }).join("  ")
  );
}
