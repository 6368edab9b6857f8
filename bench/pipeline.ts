/**
 * Per-event user-space cost of each stage (decode, enrich, filter, JSON), on
 * synthetic records, without the kernel: where the µs per event go.
 * Usage: deno run -A bench/pipeline.ts
 * @module
 */
import { decodeRecord, DecodeStage, type RawConnect } from "../src/capture/decode.ts";
import { CONN, CONN_SIZE, KIND } from "../src/capture/layout.ts";
import { enrich, EnrichStage } from "../src/enrich/enricher.ts";
import { ProcessCache, ProcessTracking } from "../src/enrich/process_cache.ts";
import { FilterStage } from "../src/filter/select.ts";
import { JsonRenderer, RenderStage } from "../src/output/renderer.ts";
import { Pipeline } from "../src/run/pipeline.ts";
import { UserNames } from "../src/enrich/users.ts";
import { compileFilter } from "../src/filter/compile.ts";
import { JsonBytes, writeJson } from "../src/output/json.ts";
import { LineWriter } from "../src/output/writer.ts";

const N = 200_000;
const v = new DataView(new ArrayBuffer(CONN_SIZE));
v.setUint32(CONN.kind.offset, KIND.connect, true);
v.setUint32(CONN.pid.offset, 4242, true);
v.setUint16(CONN.family.offset, 2, true);
v.setUint8(CONN.status.offset, 1);
[127, 0, 0, 1].forEach((b, i) => {
  v.setUint8(CONN.saddr.offset + i, b);
  v.setUint8(CONN.daddr.offset + i, b);
});
new TextEncoder().encodeInto("connector", new Uint8Array(v.buffer, CONN.comm.offset, 16));

const processes = new ProcessCache({
  proc: { startNs: () => 0n, exe: () => "/usr/bin/x", cwd: () => "/", args: () => ["x", "-q"] },
});
const deps = {
  clock: { wallNs: (b: bigint) => b + 1_700_000_000_000_000_000n },
  users: new UserNames(),
  processes,
  containers: { get: () => undefined },
};
const keep = compileFilter("dport=80 || dport=0")!;
const sink = { write: (p: Uint8Array) => p.length };
const out = new LineWriter(sink);

function time(name: string, f: () => void): number {
  for (let i = 0; i < 20_000; i++) f();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) f();
  const ns = ((performance.now() - t0) * 1e6) / N;
  console.log(`${name.padEnd(28)} ${ns.toFixed(0).padStart(6)} ns/event`);
  return ns;
}

const raw = decodeRecord(v) as RawConnect;
const ev = enrich(raw, deps);
time("decode", () => decodeRecord(v));
time("enrich", () => enrich(raw, deps));
time("filter", () => keep(ev));
const bytes = new JsonBytes();
time("json (bytes, as written)", () => {
  bytes.pos = 0;
  writeJson(ev, bytes);
});
let n = 0;
time("write (batched 1000)", () => {
  out.line('{"a":1}');
  if (++n % 1000 === 0) out.flush();
});
time("all stages", () => {
  const r = decodeRecord(v) as RawConnect;
  const e = enrich(r, deps);
  if (keep(e)) {
    bytes.pos = 0;
    writeJson(e, bytes);
    out.lines(bytes.buf, bytes.pos, 1);
  }
  if (++n % 1000 === 0) out.flush();
});

// The same work through the production stages and Pipeline (what `lightmon` runs).
const stages = new Pipeline<DataView>([
  new DecodeStage(),
  new ProcessTracking(processes),
  new EnrichStage(deps),
  new FilterStage(keep),
  new RenderStage(new JsonRenderer(out)),
], { log: () => {}, stop: () => {}, flushSoon: () => {} });
time("pipeline of stages", () => {
  stages.push(v);
  if (++n % 1000 === 0) stages.flush();
});
