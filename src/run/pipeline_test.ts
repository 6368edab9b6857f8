import assert from "node:assert/strict";
import { SnapshotOverlap } from "../capture/snapshot.ts";
import { blankConnect, type RawConnect } from "../capture/decode.ts";
import { FilterStage } from "../filter/select.ts";
import { CountLimit } from "../output/limit.ts";
import { JsonRenderer, type Renderer, RenderStage } from "../output/renderer.ts";
import { LineWriter } from "../output/writer.ts";
import { type Counters, Stage, type StageContext } from "../stage.ts";
import { sampleEvent, sampleFlow } from "../testdata/event.ts";
import { harness } from "../testdata/stage.ts";
import { Pipeline } from "./pipeline.ts";
import { ledgerLine } from "./controller.ts";

class Double extends Stage<number> {
  readonly name = "double";
  seen = 0;
  push(n: number): void {
    this.seen++;
    this.emit(n);
    this.emit(n);
  }
  override counters(): Counters {
    return { seen: this.seen };
  }
}

class Collect extends Stage<number, void> {
  readonly name = "collect";
  got: number[] = [];
  push(n: number): void {
    this.got.push(n);
  }
  override counters(): Counters {
    return { emitted: this.got.length, "dropped.none": 0 };
  }
}

const ctx: StageContext = { log: () => {}, stop: () => {}, flushSoon: () => {} };

Deno.test("a pipeline links its stages in order and sums their ledger counters", () => {
  const collect = new Collect();
  const p = new Pipeline<number>([new Double(), collect], ctx);
  p.push(1);
  p.push(2);
  assert.deepEqual(collect.got, [1, 1, 2, 2]);
  assert.deepEqual(p.ledger(), { seen: 2, emitted: 4, filtered: 0, dropped: { none: 0 } });
  assert.deepEqual(p.counters(), { double: { seen: 2 }, collect: { emitted: 4, "dropped.none": 0 } });
  assert.throws(() => new Pipeline([new Collect(), new Collect()], ctx), /duplicate stage names/);
});

Deno.test("the filter stage counts what it drops", () => {
  const f = new FilterStage((e) => e.dport === 443);
  const run = harness(f);
  f.push(sampleEvent({ dport: 443 }));
  f.push(sampleEvent({ dport: 80 }));
  assert.equal(run.out.length, 1);
  assert.deepEqual(f.counters(), { filtered: 1 });
});

Deno.test("--count passes N events, asks once to stop, and counts what arrives after", () => {
  const c = new CountLimit(2);
  const run = harness(c);
  for (let i = 0; i < 5; i++) c.push(sampleEvent({ pid: i }));
  assert.deepEqual(run.out.map((e) => e.pid), [0, 1]);
  assert.deepEqual(run.stops, [0]);
  assert.deepEqual(c.counters(), { "dropped.past-count": 3 });
});

function raw(status: RawConnect["status"], sport: number): RawConnect {
  return {
    ...blankConnect(),
    tsNs: 1n,
    cgroupId: 1n,
    procStartNs: 1n,
    pid: 1,
    tid: 1,
    mntns: 1,
    netns: 1,
    sport,
    dport: 80,
    status,
    saddr: "127.0.0.1",
    daddr: "127.0.0.1",
    comm: "c",
  };
}

Deno.test("a connection in the start-up snapshot is not reported again by the ring, for a while", () => {
  let now = 0;
  const s = new SnapshotOverlap(() => now);
  const run = harness(s);
  s.push(raw("existing", 1000));
  s.push(raw("established", 1000)); // the same connection, seen by the ring too
  s.push(raw("established", 1001));
  assert.deepEqual(run.out.map((r) => [r.status, r.sport]), [["existing", 1000], ["established", 1001]]);
  now = 11_000;
  s.push(raw("established", 1000)); // long after: a new connection on a reused port
  assert.equal(run.out.length, 3);
  assert.deepEqual(s.counters(), { duplicates: 1 });
});

function failing(error: Error): Renderer {
  return {
    event: () => {},
    flush: () => {
      throw error;
    },
    close: () => {},
    settle: () => Promise.resolve(),
    drops: () => ({}),
    closed: false,
  };
}

Deno.test("the output stage ends the run quietly on a closed pipe, and with one line on other errors", () => {
  const pipe = new RenderStage(failing(new Deno.errors.BrokenPipe("broken pipe")));
  const a = harness(pipe);
  pipe.push(sampleEvent());
  pipe.flush();
  assert.deepEqual([a.stops, a.logs], [[0], []]);
  const full = new RenderStage(failing(new Error("No space left on device (os error 28)")));
  const b = harness(full);
  full.push(sampleEvent());
  full.flush();
  assert.deepEqual(b.stops, [1]);
  assert.deepEqual(b.logs, ["lightmon: cannot write output: No space left on device (os error 28)"]);
  assert.deepEqual([...full.byStatus], [["established 4", 1]]);
});

Deno.test("the output stage counts what its writer dropped, so the ledger adds up", async () => {
  let fail = false;
  const sink = {
    write: (p: Uint8Array) => {
      if (fail) throw new Error("Input/output error (os error 5)");
      return p.length;
    },
  };
  const logs: string[] = [];
  const out = new RenderStage(new JsonRenderer(new LineWriter(sink, (l) => logs.push(l))));
  const run = harness(out);
  for (let i = 0; i < 3; i++) out.push(sampleEvent());
  out.flush();
  await out.settle(1000);
  fail = true;
  for (let i = 0; i < 2; i++) out.push(sampleEvent());
  out.flush();
  await out.settle(1000);
  fail = false;
  out.push(sampleEvent());
  out.flush();
  await out.settle(1000);
  assert.deepEqual(out.counters(), {
    emitted: 4,
    "dropped.output-stalled": 0,
    "dropped.output-failed": 2,
    "dropped.output-closed": 0,
  });
  assert.deepEqual(logs, [
    "lightmon: output: cannot write (Input/output error (os error 5)); dropping events",
    "lightmon: output: writing again; 2 events were dropped so far",
  ]);
  assert.deepEqual(run.stops, []);
});

class Forgetful extends Stage<number> {
  readonly name = "forgetful";
  override readonly notable: ReadonlySet<string> = new Set(["forgotten", "evicted"]);
  forgotten = 0;
  push(n: number): void {
    if (n < 0) this.forgotten++;
    else this.emit(n);
  }
  override counters(): Counters {
    return { forgotten: this.forgotten, evicted: 0, size: 7 };
  }
}

Deno.test("notable counters reach the exit line when they are not zero; every counter is in the stage counters", () => {
  const f = new Forgetful();
  const p = new Pipeline<number>([f, new Collect()], ctx);
  p.push(1);
  p.push(-1);
  p.push(-2);
  assert.deepEqual(p.notable(), [["forgetful forgotten", 2]]);
  assert.equal(
    ledgerLine(p.ledger(), [["kernel unstashed", 5], ...p.notable()]),
    "lightmon: seen 0 emitted 1 filtered 0 dropped 0; kernel unstashed 5, forgetful forgotten 2",
  );
  assert.equal(ledgerLine(p.ledger()), "lightmon: seen 0 emitted 1 filtered 0 dropped 0");
  assert.deepEqual(p.counters().forgetful, { forgotten: 2, evicted: 0, size: 7 });
});

Deno.test("the output stage counts a flow record by what it stands for, and tells its bytes", () => {
  const out = new RenderStage(failing(new Error("unused")));
  harness(out);
  const bytes: number[][] = [];
  out.onFlow = (e) => bytes.push([e.bytesSent, e.bytesReceived]);
  out.onClose = () => assert.fail("a flow record is not a close record");
  out.push(sampleEvent({
    event: "flow",
    family: 6,
    bytesSent: 7,
    bytesReceived: 9,
    flow: sampleFlow({ connections: 5, statuses: [["established", 4], ["refused", 1]], closes: 4 }),
  }));
  out.push(sampleEvent());
  assert.deepEqual([...out.byStatus].sort(), [
    ["closed 6", 4],
    ["established 4", 1],
    ["established 6", 4],
    ["refused 6", 1],
  ]);
  assert.deepEqual(bytes, [[7, 9]]);
});
