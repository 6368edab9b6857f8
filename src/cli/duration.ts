/**
 * Go-style durations (`time.ParseDuration`): "30s", "1m30s", "1.5h", "250ms".
 * Written here because the original tool is Go and its users' crontabs carry Go
 * durations; npm's duration parsers accept other, looser grammars.
 * @module
 */

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/**
 * Parse a Go duration into milliseconds; undefined when malformed. A bare number
 * is taken as seconds.
 *
 * @example
 * ```ts
 * parseDuration("1m30s"); // 90000
 * ```
 */
export function parseDuration(s: string): number | undefined {
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  if (s === "" || s === "0") return s === "0" ? 0 : undefined;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const start = PART.lastIndex;
    const m = PART.exec(s);
    if (!m || m.index !== start) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]];
  }
  return total;
}
