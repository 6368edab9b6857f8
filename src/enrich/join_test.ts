import assert from "node:assert/strict";
import { sampleEvent } from "../testdata/event.ts";
import { harness } from "../testdata/stage.ts";
import { ConnJoin, NameOnlyConnects, PARK_MS } from "./join.ts";
import { ProcessCache } from "./process_cache.ts";
import { CONN, CONN_SIZE, KIND, STATUS_NAMES } from "../capture/layout.ts";

const closeOf = (connId: bigint, direction: "inbound" | "outbound" = "outbound") =>
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
  j.push(sampleEvent({ connId: 5n, pid: 42 }));
  j.push(closeOf(5n));
  j.push(closeOf(5n)); // a second close of the same id: nothing left to join
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
  j.push(closeOf(9n, "inbound"));
  assert.equal(run.out.length, 0);
  now = 10;
  j.push(sampleEvent({ event: "accept", direction: "inbound", connId: 9n, pid: 77 }));
  assert.deepEqual(run.out.map((e) => [e.event, e.pid]), [["accept", 77], ["close", 77]]);
  assert.equal(j.counters().joined, 1);
  assert.equal(j.open, 0);
});

Deno.test("a close whose accept never comes goes out unjoined after the wait, or at stop", () => {
  let now = 0;
  const j = new ConnJoin(10, () => now);
  const run = harness(j);
  j.push(closeOf(1n, "inbound"));
  now = PARK_MS + 1;
  j.push(closeOf(2n, "inbound")); // its own wait starts now
  j.push(sampleEvent({ connId: 3n })); // anything else passes at once
  assert.deepEqual(run.out.map((e) => e.connId), [3n]);
  j.drain();
  assert.deepEqual(run.out.map((e) => e.connId), [3n, 1n, 2n]);
  assert.equal(j.counters().unjoined, 2);
});

Deno.test("the open connections remembered are bounded: the oldest is forgotten, and counted", () => {
  const j = new ConnJoin(3);
  const run = harness(j);
  for (let i = 1n; i <= 5n; i++) j.push(sampleEvent({ connId: i }));
  assert.equal(j.open, 3);
  j.push(closeOf(1n)); // forgotten: unjoined
  j.push(closeOf(5n));
  assert.deepEqual(run.out.slice(5).map((e) => e.pid), [0, 501750]);
  assert.deepEqual(j.counters(), { open: 2, joined: 1, unjoined: 1, forgotten: 2, waitedForAccept: 0 });
});

Deno.test("with close records alone (no accepts will come), an inbound close goes out at once, unjoined", () => {
  const j = new ConnJoin(10, () => 0, false);
  const run = harness(j);
  j.push(closeOf(4n, "inbound"));
  assert.deepEqual(run.out.map((e) => [e.event, e.connId]), [["close", 4n]]);
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
  j.push(closeOf(9n));
  assert.deepEqual(run.out.map((e) => [e.dnsName, e.exe]), [["db.internal", "/usr/bin/x"]]);
  assert.equal(j.counters().joined, 1);
});

Deno.test("ids past 2^53 join exactly: no two that round to the same number are confused", () => {
  const j = new ConnJoin();
  const run = harness(j);
  const big = 2n ** 60n;
  j.push(sampleEvent({ connId: big, pid: 1 }));
  j.push(sampleEvent({ connId: big + 1n, pid: 2 }));
  j.push(closeOf(big + 1n));
  j.push(closeOf(big));
  j.push(sampleEvent({ connId: 7n, pid: 3 }));
  j.push(closeOf(7n));
  assert.deepEqual(run.out.filter((e) => e.event === "close").map((e) => [e.connId, e.pid]), [
    [big + 1n, 2],
    [big, 1],
    [7n, 3],
  ]);
  assert.equal(j.open, 0);
});
