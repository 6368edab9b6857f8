/**
 * Untrusted strings are data: a process can name itself anything, including
 * terminal escape sequences. These helpers make such strings inert.
 * @module
 */

// C0 controls, DEL, C1 controls (U+009B is a one-character CSI on some terminals),
// and the bidirectional overrides that reorder what a reader sees.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
// deno-lint-ignore no-control-regex
const UNSAFE_TEST = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

// deno-lint-ignore no-control-regex
const PLAIN = /^[^"\\\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]*$/;

function escape(c: string): string {
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Replace control and bidi characters with visible `\xNN` / `\uNNNN` escapes,
 * for text bound for a terminal.
 *
 * @example
 * ```ts
 * forTerminal("evil\x1b[2J"); // "evil\\x1b[2J"
 * ```
 */
export function forTerminal(s: string): string {
  return UNSAFE_TEST.test(s) ? s.replace(UNSAFE, escape) : s;
}

/**
 * A JSON string literal that also escapes DEL, C1 and bidi characters, which
 * JSON.stringify leaves raw, so a JSON line printed to a terminal stays inert.
 */
export function jsonString(s: string): string {
  // Most strings need no escaping at all: skip JSON.stringify for them.
  if (PLAIN.test(s)) return `"${s}"`;
  const j = JSON.stringify(s);
  return UNSAFE_TEST.test(j) ? j.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`) : j;
}
