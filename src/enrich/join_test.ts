import assert from "node:assert/strict";
import { sampleEvent } from "../testdata/event.ts";
import { harness } from "../testdata/stage.ts";
import { ConnJoin, NameOnlyConnects, PARK_MS } from "./join.ts";
import { ProcessCache } from "./process_cache.ts";
import { CONN, CONN_SIZE, KIND, STATUS_NAMES } from "../capture/layout.ts";
import { connIdAt, inexactIds } from "../capture/decode.ts";

const closeOf = (connId: number, direction: "inbound" | "outbound" = "outbound") =>
  sampleEvent({
    event: "close",
    status: "closed",
    connId,
    direction,
    pid: 0,
    exe: "",
    container: "",
    bytesSent: 11,
    closedBy: "local",
  });

Deno.test("a close takes its opening record's process and container, and is joined once", () => {
  const j = new ConnJoin();
  const run = harness(j);
  j.push(sampleEvent({ connId: 5, pid: 42 }));
  j.push(closeOf(5));
  j.push(closeOf(5)); // a second close of the same id: nothing left to join
  assert.deepEqual(run.out.map((e) => [e.event, e.pid, e.exe, e.container]), [
    ["connect", 42, "/usr/bin/busybox", "dreamy_carson"],
    ["close", 42, "/usr/bin/busybox", "dreamy_carson"],
    ["close", 0, "", ""],
  ]);
  assert.equal(run.out[1].bytesSent, 11);
  assert.deepEqual(j.counters(), { open: 0, joined: 1, unjoined: 1, forgotten: 0, waitedForAccept: 0 });
});

Deno.test("an inbound close that beats its accept waits for it, then follows it", () => {
  let now = 0;
  const j = new ConnJoin(10, () => now);
  const run = harness(j);
  j.push(closeOf(9, "inbound"));
  assert.equal(run.out.length, 0);
  now = 10;
  j.push(sampleEvent({ event: "accept", direction: "inbound", connId: 9, pid: 77 }));
  assert.deepEqual(run.out.map((e) => [e.event, e.pid]), [["accept", 77], ["close", 77]]);
  assert.equal(j.counters().joined, 1);
  assert.equal(j.open, 0);
});

Deno.test("a close whose accept never comes goes out unjoined after the wait, or at stop", () => {
  let now = 0;
  const j = new ConnJoin(10, () => now);
  const run = harness(j);
  j.push(closeOf(1, "inbound"));
  now = PARK_MS + 1;
  j.push(closeOf(2, "inbound")); // its own wait starts now
  j.push(sampleEvent({ connId: 3 })); // anything else passes at once
  assert.deepEqual(run.out.map((e) => e.connId), [3]);
  j.drain();
  assert.deepEqual(run.out.map((e) => e.connId), [3, 1, 2]);
  assert.equal(j.counters().unjoined, 2);
});

Deno.test("the open connections remembered are bounded: the oldest is forgotten, and counted", () => {
  const j = new ConnJoin(3);
  const run = harness(j);
  for (let i = 1; i <= 5; i++) j.push(sampleEvent({ connId: i }));
  assert.equal(j.open, 3);
  j.push(closeOf(1)); // forgotten: unjoined
  j.push(closeOf(5));
  assert.deepEqual(run.out.slice(5).map((e) => e.pid), [0, 501750]);
  assert.deepEqual(j.counters(), { open: 2, joined: 1, unjoined: 1, forgotten: 2, waitedForAccept: 0 });
});

Deno.test("with close records alone (no accepts will come), an inbound close goes out at once, unjoined", () => {
  const j = new ConnJoin(10, () => 0, false);
  const run = harness(j);
  j.push(closeOf(4, "inbound"));
  assert.deepEqual(run.out.map((e) => [e.event, e.connId]), [["close", 4]]);
  assert.deepEqual(j.counters(), { open: 0, joined: 0, unjoined: 1, forgotten: 0, waitedForAccept: 0 });
});

Deno.test("connects taken for their names only: an established, tracked one is kept for its close, the rest not", () => {
  const j = new ConnJoin();
  const processes = new ProcessCache({
    proc: { startNs: () => 0n, exe: () => "/usr/bin/x", cwd: () => "/", args: () => [] },
  });
  const taker = new NameOnlyConnects(j, { lookup: () => "db.internal" }, processes);
  const record = (status: number, connId: bigint) => {
    const v = new DataView(new ArrayBuffer(CONN_SIZE));
    v.setUint32(CONN.kind.offset, KIND.connect, true);
    v.setUint8(CONN.status.offset, status);
    v.setBigUint64(CONN.conn_id.offset, connId, true);
    v.setUint16(CONN.family.offset, 2, true);
    v.setBigUint64(CONN.start_ns.offset, 1_000n, true);
    v.setBigUint64(CONN.ts_ns.offset, 51_000n, true);
    return v;
  };
  assert.equal(taker.take(record(STATUS_NAMES.indexOf("refused"), 0n)), true);
  assert.equal(taker.take(record(STATUS_NAMES.indexOf("established"), 0n)), true); // untracked
  assert.equal(j.open, 0);
  assert.equal(taker.take(record(STATUS_NAMES.indexOf("established"), 9n)), true);
  assert.equal(j.open, 1);
  const run = harness(j);
  j.push(closeOf(9));
  assert.deepEqual(run.out.map((e) => [e.dnsName, e.exe]), [["db.internal", "/usr/bin/x"]]);
  assert.equal(j.counters().joined, 1);
});

Deno.test("an id past 2^53 is untracked: counted at decode, not kept for a close that could take another's words", () => {
  const j = new ConnJoin();
  const processes = new ProcessCache({
    proc: { startNs: () => 0n, exe: () => "/usr/bin/x", cwd: () => "/", args: () => [] },
  });
  const taker = new NameOnlyConnects(j, { lookup: () => "db.internal" }, processes);
  const v = new DataView(new ArrayBuffer(CONN_SIZE));
  v.setUint32(CONN.kind.offset, KIND.connect, true);
  v.setUint8(CONN.status.offset, STATUS_NAMES.indexOf("established"));
  v.setUint16(CONN.family.offset, 2, true);
  const before = inexactIds.count;
  v.setBigUint64(CONN.conn_id.offset, 2n ** 53n - 1n, true);
  assert.equal(connIdAt(v, CONN.conn_id.offset), Number.MAX_SAFE_INTEGER); // the last exact one
  v.setBigUint64(CONN.conn_id.offset, 2n ** 53n, true);
  assert.equal(connIdAt(v, CONN.conn_id.offset), 0);
  assert.equal(inexactIds.count, before + 1);
  assert.equal(taker.take(v), true);
  assert.equal(j.open, 0);
  // Its close, decoded untracked, goes out with the kernel's task, joined to nothing.
  const run = harness(j);
  j.push(sampleEvent({ connId: 7, pid: 3 }));
  j.push(closeOf(0));
  assert.deepEqual(run.out.map((e) => [e.event, e.connId, e.pid]), [["connect", 7, 3], ["close", 0, 0]]);
  assert.equal(j.open, 1);
});
