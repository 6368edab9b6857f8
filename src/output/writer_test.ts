import assert from "node:assert/strict";
import { LineWriter, MAX_WRITE, MIN_WRITE, nextWriteSize } from "./writer.ts";

function collector() {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write(p: Uint8Array) {
      // Take at most 5 bytes per call, as a pipe may.
      const n = Math.min(5, p.length);
      chunks.push(p.slice(0, n));
      return Promise.resolve(n);
    },
    text: () => new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))),
  };
}

Deno.test("lines are written whole, in order, across partial writes and a full buffer", async () => {
  const c = collector();
  const w = new LineWriter(c, undefined, 64);
  for (let i = 0; i < 20; i++) w.line(`line ${i} ünïcödé`);
  w.line("x".repeat(100)); // longer than the buffer
  await w.settle(1000);
  const expected = Array.from({ length: 20 }, (_, i) => `line ${i} ünïcödé\n`).join("") + "x".repeat(100) + "\n";
  assert.equal(c.text(), expected);
  assert.deepEqual(w.drops, { "output-stalled": 0, "output-failed": 0, "output-closed": 0 });
});

Deno.test("flush with nothing queued writes nothing", async () => {
  const c = collector();
  const w = new LineWriter(c);
  w.flush();
  await w.settle(100);
  assert.equal(c.chunks.length, 0);
});

Deno.test("a reader that stops reading never blocks line(): whole batches are dropped and counted", async () => {
  // A write that never completes: the pipe's reader stopped reading.
  const stuck = { write: () => new Promise<number>(() => {}) };
  const said: string[] = [];
  const w = new LineWriter(stuck, (l) => said.push(l), 1024, 4096);
  const line = "y".repeat(99);
  for (let batch = 0; batch < 100; batch++) {
    for (let i = 0; i < 10; i++) w.line(line); // 1000 bytes a batch
    w.flush();
  }
  const t0 = performance.now();
  await w.settle(200);
  assert.ok(performance.now() - t0 < 1000, "settle() waited past its deadline");
  // What fits the queue (which counts the buffers batches are held in) waits, the
  // rest were dropped as they came, and what waited was given up at the deadline.
  assert.deepEqual(w.drops, { "output-stalled": 1000, "output-failed": 0, "output-closed": 0 });
  assert.deepEqual(said, ["lightmon: output: the reader is not keeping up; dropping events until it does"]);
});

Deno.test("a reader that went away closes the writer; what was queued counts as closed", async () => {
  const gone = {
    write: () => Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)")),
  };
  const w = new LineWriter(gone);
  w.line("a");
  w.line("b");
  await w.settle(1000);
  assert.equal(w.closed, true);
  w.line("c");
  w.flush();
  assert.deepEqual(w.drops, { "output-stalled": 0, "output-failed": 0, "output-closed": 3 });
});

Deno.test("a reader that is behind but reading asks the producer to hold back; one that stopped does not", async () => {
  const pending: (() => void)[] = [];
  // Each write completes only when the test says so.
  const sink = {
    write: (p: Uint8Array) => new Promise<number>((r) => pending.push(() => r(p.length))),
  };
  const w = new LineWriter(sink, undefined, 64, 1000);
  assert.equal(w.backlogged, false);
  for (let i = 0; i < 10; i++) {
    w.line("x".repeat(99));
    w.flush();
  }
  assert.ok(w.backlogged, "over half the queue waits on a write just started");
  pending.shift()!(); // the reader takes one batch
  await new Promise((r) => setTimeout(r, 0));
  assert.ok(w.backlogged);
  // The next write hangs for more than a second: a reader that stopped reading.
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal(w.backlogged, false);
  while (pending.length) pending.shift()!();
  await w.settle(1000);
  while (pending.length) pending.shift()!();
  await w.settle(1000);
});

Deno.test("the producer is held back at 2 MiB queued, and a look's worth more after that is not dropped", async () => {
  const pending: (() => void)[] = [];
  let open = false; // writes wait until the test lets them through
  const sink = {
    write: (p: Uint8Array) => open ? p.length : new Promise<number>((r) => pending.push(() => r(p.length))),
  };
  const w = new LineWriter(sink); // the production bounds
  const batch = "x".repeat((1 << 20) - 100); // about what one flush of the 1 MiB buffer carries
  const flushOne = () => {
    w.line(batch);
    w.flush();
  };
  flushOne();
  flushOne();
  assert.equal(w.backlogged, false, "2 MiB queued: not yet");
  flushOne();
  assert.ok(w.backlogged, "past 2 MiB queued, and the reader is reading: hold back");
  // One look at the ring already under way renders up to ~3 MiB more: none of it is dropped.
  for (let i = 0; i < 3; i++) flushOne();
  assert.equal(w.drops["output-stalled"], 0);
  open = true;
  while (pending.length) pending.shift()!();
  await w.settle(1000);
  assert.equal(w.drops["output-stalled"], 0);
  assert.equal(w.backlogged, false);
});

Deno.test("batch buffers are reused only once written: a write given up on keeps its bytes", async () => {
  const text = (p: Uint8Array) => new TextDecoder().decode(p);
  const held: Uint8Array[] = [];
  const written: string[] = [];
  let release: (() => void) | undefined;
  const sink = {
    write(p: Uint8Array): Promise<number> {
      held.push(p); // kept without a copy, as the kernel keeps a buffer while a write is pending
      written.push(text(p));
      if (held.length === 1) return new Promise((r) => (release = () => r(p.length)));
      return Promise.resolve(p.length);
    },
  };
  const w = new LineWriter(sink, undefined, 64);
  w.line("first");
  await w.settle(20); // the reader stopped: given up, but the write still holds the bytes
  release!();
  await new Promise((r) => setTimeout(r, 0));
  for (let i = 0; i < 8; i++) {
    w.line(`batch ${i}`);
    await w.settle(1000);
  }
  assert.equal(text(held[0]), "first\n");
  assert.deepEqual(written.slice(1), Array.from({ length: 8 }, (_, i) => `batch ${i}\n`));
  // Written batches share buffers: eight batches, far fewer buffers.
  assert.ok(new Set(held.slice(1).map((p) => p.buffer)).size < 8);
  assert.ok(!held.slice(1).some((p) => p.buffer === held[0].buffer));
});

Deno.test("writes grow to a batch for a fast reader and shrink to a pipe's buffer for a slow one", () => {
  let size = MIN_WRITE;
  for (let i = 0; i < 10; i++) size = nextWriteSize(size, size, 0.05); // a fast reader takes each at once
  assert.equal(size, MAX_WRITE);
  // A reader at 200 KB/s: a write takes what it takes; the next one asks for a quarter second of it, or a pipe's buffer.
  size = nextWriteSize(size, 128 << 10, 650);
  assert.equal(size, MIN_WRITE);
  // A pipe's buffer fills at once even for a slow reader: doubling, not jumping, keeps the next write short.
  assert.equal(nextWriteSize(MIN_WRITE, MIN_WRITE, 0.05), 2 * MIN_WRITE);
});

Deno.test("a storm's batches reuse the buffers of the batches before them, however many were in flight", async () => {
  // Six batches queued behind a slow write, as under a storm; then six more of other sizes.
  const held: Uint8Array[] = [];
  const pending: (() => void)[] = [];
  const sink = {
    write(p: Uint8Array): Promise<number> {
      held.push(p);
      return new Promise((r) => pending.push(() => r(p.length)));
    },
  };
  const w = new LineWriter(sink, undefined, 1 << 20);
  const batch = (bytes: number) => {
    w.line("x".repeat(bytes - 1));
    w.flush();
  };
  const drain = async () => {
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise((r) => setTimeout(r, 0));
    }
  };
  for (let i = 0; i < 6; i++) batch(300_000 + i * 1000);
  await drain();
  const first = new Set(held.map((p) => p.buffer));
  assert.equal(first.size, 6);
  held.length = 0;
  // A spare up to four times a batch's size holds it (a queued batch counts its whole buffer).
  for (let i = 0; i < 6; i++) batch(150_000 + i * 30_000);
  await drain();
  assert.equal(held.length, 6);
  assert.ok(held.every((p) => first.has(p.buffer)), "every batch went into a spare");
  // A small batch takes no big spare: it would count 512 KiB against the queue's bound.
  held.length = 0;
  batch(1000);
  await drain();
  assert.ok(!first.has(held[0].buffer));
  await w.settle(1000);
});
