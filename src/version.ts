/** lightmon's version: CHANGELOG.md's newest release (src/generated_test.ts checks they agree). */
export const VERSION = "0.20.0";
/** The day that version was released, as CHANGELOG.md and the man page give it. */
export const RELEASED = "2026-12-07";
