import assert from "node:assert/strict";
import { LineWriter } from "./writer.ts";

function collector() {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    writeSync(p: Uint8Array) {
      // Take at most 5 bytes per call, as a pipe may.
      const n = Math.min(5, p.length);
      chunks.push(p.slice(0, n));
      return n;
    },
    text: () => new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))),
  };
}

Deno.test("lines are written whole, in order, across partial writes and a full buffer", () => {
  const c = collector();
  const w = new LineWriter(c, 64);
  for (let i = 0; i < 20; i++) w.line(`line ${i} ünïcödé`);
  w.line("x".repeat(100)); // longer than the buffer
  w.flush();
  const expected = Array.from({ length: 20 }, (_, i) => `line ${i} ünïcödé\n`).join("") + "x".repeat(100) + "\n";
  assert.equal(c.text(), expected);
});

Deno.test("flush with nothing queued writes nothing", () => {
  const c = collector();
  new LineWriter(c).flush();
  assert.equal(c.chunks.length, 0);
});
