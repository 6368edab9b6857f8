import assert from "node:assert/strict";
import { sampleEvent } from "../testdata/event.ts";
import type { ConnEvent } from "../event.ts";
import { JSON_FIELDS, JsonBytes, writeJson } from "./json.ts";

/** The JSON the registry defines, field by field, with no caching or fast path: the reference. */
const reference = (e: ConnEvent) =>
  "{" + JSON_FIELDS.filter((f) =>
    !f.when || f.when(e)
  ).map((f) => `${JSON.stringify(f.key)}:${f.json.encode(f.get(e))}`)
    .join(",") +
  "}";

const bytesOf = (e: ConnEvent, w = new JsonBytes()) => {
  w.pos = 0;
  writeJson(e, w);
  return new TextDecoder().decode(w.buf.subarray(0, w.pos));
};

Deno.test("writeJson writes the registry's JSON byte for byte, for ordinary, hostile and extreme values", () => {
  const hostile = [
    "",
    "a\u0000b",
    "\x1b[31m",
    "\u202eevil",
    "ünïcödé",
    'quote"back\\slash',
    "\ud800",
    "x".repeat(5000),
  ];
  const w = new JsonBytes(); // reused across events, as the renderer does
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let i = 0; i < 3000; i++) {
    const e = sampleEvent({
      pid: rnd(2 ** 22),
      tid: rnd(10) === 0 ? 0 : rnd(2 ** 22),
      sport: rnd(65536),
      dport: rnd(65536),
      latencyUs: [0, 9, 10, 99999, 2 ** 53 + 2, -5, 1.5][rnd(7)],
      kernelTime: [0n, 9n, BigInt(rnd(2 ** 31)) * 1_000_000n, 2n ** 53n, 2n ** 64n - 1n][rnd(5)],
      wallNs: 1_713_334_189_000_000_000n + BigInt(rnd(2 ** 31)) * 1000n + BigInt(rnd(1000)),
      comm: hostile[rnd(hostile.length)],
      exe: hostile[rnd(hostile.length)],
      args: [hostile[rnd(hostile.length)], "-q"],
      saddr: ["127.0.0.1", "::1", hostile[rnd(hostile.length)]][rnd(3)],
      container: hostile[rnd(hostile.length)],
      containerId: rnd(2) ? "" : "a".repeat(64),
      cgroupId: BigInt(rnd(2 ** 31)),
      status: (["established", "refused", "pending", "timeout"] as const)[rnd(4)],
      family: rnd(2) ? 4 : 6,
    });
    assert.equal(bytesOf(e, w), reference(e), `event ${i}`);
  }
});

Deno.test("uint writes every safe integer as String() does, at the edges of its fast paths", () => {
  const w = new JsonBytes(8); // grows as it goes
  const edges = [0, 9, 10, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 1e8, 1e8 - 1, 1e16 - 1, 2 ** 53 - 1, 2 ** 53 - 2];
  for (let k = 1; k < 9e7; k = k * 3 + 1) edges.push(k * 1e8 - 1, k * 1e8, k * 1e8 + 1);
  let seed = 11;
  for (let i = 0; i < 2000; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    edges.push(Math.floor((seed / 2 ** 31) * 2 ** 53), seed);
  }
  const text = new TextDecoder();
  for (const n of edges.filter(Number.isSafeInteger)) {
    w.pos = 0;
    w.uint(n);
    assert.equal(text.decode(w.buf.subarray(0, w.pos)), String(n));
  }
});
