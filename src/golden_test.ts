/**
 * Golden test: a recorded stream of ring records (src/testdata/records.ts) through
 * the production pipeline (decode, process tracking, enrichment, hold-back, filter)
 * into every renderer must print exactly the bytes in src/testdata/golden/. `GOLDEN_WRITE=1 deno test -A src/golden_test.ts`
 * rewrites them, for a change to the output that is meant.
 */
import assert from "node:assert/strict";
import { DecodeStage } from "./capture/decode.ts";
import type { RingRecord } from "../ffi/ring_consumer.ts";
import { SnapshotOverlap } from "./capture/snapshot.ts";
import { EnrichStage, type NameSource } from "./enrich/enricher.ts";
import { Holdback } from "./enrich/holdback.ts";
import { ConnJoin, NameOnlyConnects } from "./enrich/join.ts";
import { ProcessCache, ProcessTracking } from "./enrich/process_cache.ts";
import { UserNames } from "./enrich/users.ts";
import type { ConnEvent } from "./event.ts";
import { FilterStage, keepPredicate } from "./filter/select.ts";
import { logLine } from "./output/logfile.ts";
import { JsonRenderer, LineRenderer, type Renderer, RenderStage } from "./output/renderer.ts";
import { SummaryRenderer } from "./output/summary.ts";
import { TableOutput } from "./output/table.ts";
import { LineWriter } from "./output/writer.ts";
import { Pipeline } from "./run/pipeline.ts";
import {
  GOLDEN_CONTAINERS,
  GOLDEN_PASSWD,
  GOLDEN_WALL_OFFSET,
  goldenCgroups,
  goldenRecords,
} from "./testdata/records.ts";

Deno.env.set("TZ", "UTC");
const DIR = new URL("./testdata/golden/", import.meta.url);

/**
 * The recorded stream through the production pipeline, into `renderer`. `closes`:
 * as with --events close and DNS names (`names`), the connects taken before they
 * are decoded (NameOnlyConnects), or (`full`) decoded, joined and then filtered.
 */
async function run(renderer: Renderer, closes?: { names: NameSource; nameOnly: boolean }): Promise<void> {
  const passwd = await Deno.makeTempFile();
  await Deno.writeTextFile(passwd, GOLDEN_PASSWD);
  const none = () => undefined;
  const processes = new ProcessTracking(
    new ProcessCache({ proc: { startNs: none, exe: none, cwd: () => "/srv", args: none } }),
  );
  const containers = { get: (id: string) => GOLDEN_CONTAINERS[id], expect: () => false };
  const ctx = { log: () => {}, stop: () => {}, flushSoon: () => {} };
  const join = new ConnJoin();
  const nameOnly = closes?.nameOnly ? new NameOnlyConnects(join, closes.names, processes.cache) : undefined;
  const pipeline = new Pipeline<RingRecord>([
    new DecodeStage(nameOnly && ((v, b) => nameOnly.take(v, b)), goldenCgroups()),
    processes,
    new SnapshotOverlap(),
    new EnrichStage({
      clock: { wallNs: (b) => b + GOLDEN_WALL_OFFSET },
      users: new UserNames(passwd),
      processes: processes.cache,
      containers,
      names: closes?.names,
    }),
    new Holdback(200, containers),
    join,
    new FilterStage(keepPredicate({ include: closes ? "event=close" : "", exclude: "" })),
    new RenderStage(renderer),
  ], ctx);
  // As the ring consumer hands them on: one record object, reused, at its offset in one view of them all.
  const records = goldenRecords();
  const all = new Uint8Array(records.reduce((n, v) => n + v.byteLength, 0));
  let at = 0;
  for (const v of records) {
    all.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), at);
    at += v.byteLength;
  }
  const rec: RingRecord = { view: new DataView(all.buffer), offset: 0, length: 0 };
  for (const v of records) {
    rec.length = v.byteLength;
    pipeline.push(rec);
    rec.offset += rec.length;
  }
  pipeline.drain();
  pipeline.close();
  await pipeline.settle(1000);
  await Deno.remove(passwd);
  const l = pipeline.ledger();
  assert.equal(l.seen, l.emitted + l.filtered);
  if (!closes) assert.equal(l.filtered, 0);
}

/** What `f` writes to a LineWriter, as text. */
async function collect(f: (w: LineWriter) => Renderer, closes?: Parameters<typeof run>[1]): Promise<string> {
  const chunks: Uint8Array[] = [];
  const w = new LineWriter({ write: (p: Uint8Array) => (chunks.push(p.slice()), p.length) });
  await run(f(w), closes);
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

/** A renderer that writes the original's log lines to a writer, as the log file gets them. */
class LogLines extends LineRenderer {
  event(e: ConnEvent): void {
    this.out.line(logLine(e));
  }
}

async function outputs(): Promise<Record<string, string>> {
  return {
    "events.jsonl": await collect((w) => new JsonRenderer(w)),
    // As with --events close, or all: the stream has close records.
    "table-80.txt": await collect((w) => new TableOutput(w, 80, false, true)),
    "table-80-connects.txt": await collect((w) => new TableOutput(w, 80)),
    "table-120.txt": await collect((w) => new TableOutput(w, 120, false, true)),
    "table-200.txt": await collect((w) => new TableOutput(w, 200, false, true)),
    "log.jsonl": await collect((w) => new LogLines(w)),
    "summary.txt": await collect((w) => new SummaryRenderer(w, "table")),
    "summary.jsonl": await collect((w) => new SummaryRenderer(w, "json")),
  };
}

Deno.test("every output of the recorded stream is byte for byte the golden one", async () => {
  const got = await outputs();
  for (const [name, text] of Object.entries(got)) {
    const path = new URL(name, DIR);
    if (Deno.env.get("GOLDEN_WRITE") === "1") await Deno.writeTextFile(path, text);
    assert.equal(text, await Deno.readTextFile(path), name);
  }
});

Deno.test("--events close: connects taken before decoding give their closes the bytes the whole join gives", async () => {
  // The stream's outbound connection (10.0.0.5 -> 10.0.0.8:8443) has a name; the close record alone cannot know it.
  const names = { lookup: (_netns: bigint, address: string) => (address === "10.0.0.8" ? "api.internal" : "") };
  const full = await collect((w) => new JsonRenderer(w), { names, nameOnly: false });
  const taken = await collect((w) => new JsonRenderer(w), { names, nameOnly: true });
  assert.equal(taken, full);
  const closes = full.trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(closes.length >= 2 && closes.every((e) => e.event === "close"));
  const outbound = closes.find((e) => e.direction === "outbound");
  // What only the connect knew: the name then, its handshake's latency, its process image.
  assert.equal(outbound.dnsName, "api.internal");
  assert.equal(outbound.latencyUs, 1234);
  assert.equal(outbound.procSource, "exec");
});
