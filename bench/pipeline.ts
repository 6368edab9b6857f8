/**
 * Per-event user-space CPU cost (all threads) of each stage (decode, enrich, filter, JSON, an OTLP record, a table row), on
 * synthetic records, without the kernel: where the µs per event go.
 * Usage: deno run -A bench/pipeline.ts
 * @module
 */
import { decodeRecord, DecodeStage, type RawConnect } from "../src/capture/decode.ts";
import type { RingRecord } from "../ffi/ring_consumer.ts";
import { CONN, CONN_SIZE, FLAG_INBOUND, KIND, STATUS_NAMES } from "../src/capture/layout.ts";
import { ConnJoin } from "../src/enrich/join.ts";
import { Holdback } from "../src/enrich/holdback.ts";
import type { Status } from "../src/event.ts";
import { enrich, EnrichStage } from "../src/enrich/enricher.ts";
import { ProcessCache, ProcessTracking } from "../src/enrich/process_cache.ts";
import { FilterStage } from "../src/filter/select.ts";
import { JsonRenderer, RenderStage } from "../src/output/renderer.ts";
import { Pipeline } from "../src/run/pipeline.ts";
import { UserNames } from "../src/enrich/users.ts";
import { compileFilter } from "../src/filter/compile.ts";
import { JsonBytes, writeJson } from "../src/output/json.ts";
import { LineWriter } from "../src/output/writer.ts";
import { ProtoLogBatch } from "../src/output/otlp_encode.ts";
import { TableRenderer } from "../src/output/table.ts";
import { PeerAddresses } from "../src/enrich/peers.ts";
import process from "node:process";

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

/** The process's CPU time (all threads: GC helpers and the writer's too), µs. */
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** Mean CPU ns per call of `f`; `drain`, when given, runs every 1000 calls (the writer's turn of the event loop). */
async function time(name: string, f: () => void, drain?: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 20_000; i++) f();
  await drain?.();
  const t0 = cpuUs();
  for (let i = 0; i < N; i++) {
    f();
    if (drain && i % 1000 === 999) await drain();
  }
  const ns = ((cpuUs() - t0) * 1e3) / N;
  console.log(`${name.padEnd(28)} ${ns.toFixed(0).padStart(6)} ns/event`);
  return ns;
}
/** One turn of the event loop: the writer writes what was queued. */
const turn = () => new Promise<void>((r) => setTimeout(r, 0));

const raw = decodeRecord(v) as RawConnect;
const ev = enrich(raw, deps);
await time("decode", () => decodeRecord(v));
await time("enrich", () => enrich(raw, deps));
// Naming the remote end: one Map get by the address. The same deps shape in each row (one
// deps object per run, as lightmon has), an empty book against one of 10,000 addresses.
const book = (n: number) => {
  const peers = new PeerAddresses();
  for (let i = 0; i < n; i++) {
    const peer = {
      container: `c${i}`,
      containerId: i.toString(16).padStart(64, "0"),
      image: "img",
      pod: "",
      namespace: "",
    };
    peers.claim(`10.88.${i >> 8}.${i & 255}`, `docker/${i}`, peer, 0);
  }
  return { ...deps, peers };
};
const noPeers = book(0);
const withPeers = book(10_000);
const v2 = new DataView(v.buffer.slice(0));
[10, 88, 7, 7].forEach((b, i) => v2.setUint8(CONN.daddr.offset + i, b));
const toPeer = decodeRecord(v2) as RawConnect;
await time("enrich, no address known", () => enrich(raw, noPeers));
await time("enrich, peer miss (10,000)", () => enrich(raw, withPeers));
await time("enrich, peer hit (10,000)", () => enrich(toPeer, withPeers));
await time("filter", () => keep(ev));
const bytes = new JsonBytes();
await time("json (bytes, as written)", () => {
  bytes.pos = 0;
  writeJson(ev, bytes);
});
const named = enrich(toPeer, withPeers);
await time("json with its peer's name", () => {
  bytes.pos = 0;
  writeJson(named, bytes);
});
const otlp = new ProtoLogBatch({ "service.name": "lightmon", "host.name": "bench" }, {
  name: "lightmon",
  version: "0",
});
let records = 0;
await time("otlp record (protobuf bytes)", () => {
  otlp.add(ev, ev.wallNs);
  if (++records % 512 === 0) otlp.take();
});
const table = new TableRenderer(160);
table.render(ev); // the header
const rows = new JsonBytes();
await time("table row (bytes, as written)", () => {
  rows.pos = 0;
  table.writeRow(ev, rows);
});
let n = 0;
await time("write (batched 1000)", () => {
  out.line('{"a":1}');
  if (++n % 1000 === 0) out.flush();
}, turn);
await time("all stages", () => {
  const r = decodeRecord(v) as RawConnect;
  const e = enrich(r, deps);
  if (keep(e)) {
    writeJson(e, bytes);
    bytes.ensure(1);
    bytes.buf[bytes.pos++] = 0x0a;
  }
  if (++n % 1000 === 0) {
    out.lines(bytes.buf, bytes.pos, 1000);
    out.flush();
    bytes.pos = 0;
  }
}, turn);

// The same work through the production stages and Pipeline (what `lightmon` runs), a record as the ring hands it on.
const rec: RingRecord = { view: v, offset: 0, length: v.byteLength };
const stages = new Pipeline<RingRecord>([
  new DecodeStage(),
  new ProcessTracking(processes),
  new EnrichStage(deps),
  new FilterStage(keep),
  new RenderStage(new JsonRenderer(out)),
], { log: () => {}, stop: () => {}, flushSoon: () => {} });
await time("pipeline of stages", () => {
  stages.push(rec);
  if (++n % 1000 === 0) stages.flush();
}, turn);

// --events all: a connection's four records (connect, accept, the two closes) through the stages
// with the join, each connection under new ids, in the order the kernel emits them; ns per record.
const conn = (kind: number, status: Status, flags: number) => {
  const r = new DataView(v.buffer.slice(0));
  r.setUint32(CONN.kind.offset, kind, true);
  r.setUint8(CONN.status.offset, STATUS_NAMES.indexOf(status));
  r.setUint8(CONN.flags.offset, flags);
  return { view: r, offset: 0, length: r.byteLength };
};
const four = [
  conn(KIND.connect, "established", 0),
  conn(KIND.accept, "established", FLAG_INBOUND),
  conn(KIND.close, "closed", 0),
  conn(KIND.close, "closed", FLAG_INBOUND),
];
const join = new ConnJoin();
const joined = new Pipeline<RingRecord>([
  new DecodeStage(),
  new ProcessTracking(processes),
  new EnrichStage(deps),
  new Holdback(0, { get: () => undefined, expect: () => false }),
  join,
  new FilterStage(keep),
  new RenderStage(new JsonRenderer(out)),
], { log: () => {}, stop: () => {}, flushSoon: () => {} });
let record = 0;
await time("--events all, with the join", () => {
  const r = four[record & 3];
  // Connection k's outbound side is id 2k, its inbound side 2k+1 (the kernel gives each socket its own).
  const id = ((record >> 2) << 1) + (r.view.getUint8(CONN.flags.offset) & FLAG_INBOUND ? 1 : 0);
  r.view.setUint32(CONN.conn_id.offset, (id << 12) + 1, true);
  r.view.setUint32(CONN.conn_id.offset + 4, Math.floor(id / 2 ** 20), true);
  joined.push(r);
  if (++record % 1000 === 0) joined.flush();
}, turn);
// Every close found its opening: the row measured the join, not records passing it by.
if (join.counters().joined !== record / 2 || join.counters().unjoined !== 0) {
  throw new Error(`bench: the join did not join (${JSON.stringify(join.counters())})`);
}
