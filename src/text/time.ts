/**
 * RFC 3339 timestamps with the local offset and nanoseconds, as Go's
 * time.RFC3339Nano prints them with all nine digits.
 * @module
 */

/** Two digits, zero-padded. */
export const pad2 = (n: number) => (n < 10 ? "0" : "") + n;

let cachedSecond = -1;
let cachedPrefix = "";
let cachedOffset = "";

function offsetOf(d: Date): string {
  const m = -d.getTimezoneOffset();
  if (m === 0) return "Z";
  const a = Math.abs(m);
  return `${m < 0 ? "-" : "+"}${pad2(Math.floor(a / 60))}:${pad2(a % 60)}`;
}

/**
 * Format wall-clock nanoseconds since the epoch.
 *
 * @example
 * ```ts
 * rfc3339Nano(1713334189162027869n); // "2024-04-17T06:09:49.162027869Z" in UTC
 * ```
 */
export function rfc3339Nano(wallNs: bigint): string {
  const sec = Number(wallNs / 1_000_000_000n);
  cacheSecond(sec);
  const frac = String(Number(wallNs % 1_000_000_000n) + 1_000_000_000).slice(1);
  return `${cachedPrefix}.${frac}${cachedOffset}`;
}

/** RFC 3339 to the second with the local offset, as logrus prints `time`. */
export function rfc3339Seconds(wallNs: bigint): string {
  cacheSecond(Number(wallNs / 1_000_000_000n));
  return cachedPrefix + cachedOffset;
}

/** Format the date-and-time part of second `sec` once, for every event within it. */
function cacheSecond(sec: number): void {
  if (sec !== cachedSecond) {
    const d = new Date(sec * 1000);
    cachedSecond = sec;
    cachedPrefix = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${
      pad2(d.getMinutes())
    }:${pad2(d.getSeconds())}`;
    cachedOffset = offsetOf(d);
  }
}

let clockFrom = 0n;
let clockUntil = 0n;
let clockText = "";

/** `HH:MM:SS` local time, for the table: made once per second (compared, not divided, within it). */
export function clockTime(wallNs: bigint): string {
  if (wallNs >= clockFrom && wallNs < clockUntil) return clockText;
  const d = new Date(Number(wallNs / 1_000_000n));
  clockFrom = wallNs - wallNs % 1_000_000_000n;
  clockUntil = clockFrom + 1_000_000_000n;
  clockText = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return clockText;
}
