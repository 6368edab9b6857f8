import assert from "node:assert/strict";
import { sampleEvent, sampleFlow } from "../testdata/event.ts";
import { FlowTable, SummaryRenderer } from "./summary.ts";
import { LineWriter } from "./writer.ts";

Deno.test("events fold into unique flows with counts and first/last seen", () => {
  const t = new FlowTable();
  t.add(sampleEvent({ wallNs: 3_000_000_000n }));
  t.add(sampleEvent({ wallNs: 1_000_000_000n }));
  t.add(sampleEvent({ wallNs: 2_000_000_000n, sport: 9999 })); // another source port: same flow
  t.add(sampleEvent({ status: "refused" }));
  t.add(sampleEvent({ dport: 80 }));
  const flows = t.flows();
  assert.equal(flows.length, 3);
  assert.deepEqual(
    { ...flows[0], firstSeen: flows[0].firstSeen.slice(17, 29), lastSeen: flows[0].lastSeen.slice(17, 29) },
    {
      process: "/usr/bin/busybox",
      user: "root",
      container: "dreamy_carson",
      direction: "outbound",
      daddr: "183.2.172.17",
      dport: 443,
      status: "established",
      count: 3,
      firstSeen: "01.000000000",
      lastSeen: "03.000000000",
    },
  );
  assert.deepEqual(flows.slice(1).map((f) => [f.dport, f.status, f.count]), [[80, "established", 1], [
    443,
    "refused",
    1,
  ]]);
});

Deno.test("the flow table is capped: the rest fold into one overflow row, said once", async () => {
  const said: string[] = [];
  const chunks: string[] = [];
  const w = new LineWriter({ write: (p: Uint8Array) => (chunks.push(new TextDecoder().decode(p)), p.length) });
  const r = new SummaryRenderer(w, "json", (l) => said.push(l), 3);
  for (let i = 0; i < 1000; i++) r.event(sampleEvent({ daddr: `10.0.${i >> 8}.${i & 255}`, status: "refused" }));
  r.close();
  await r.settle(1000);
  const lines = chunks.join("").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 4);
  assert.deepEqual(lines.slice(0, 3).map((l) => l.count), [1, 1, 1]);
  assert.equal(lines[3].overflow, true);
  assert.equal(lines[3].count, 997);
  assert.equal(said.length, 1);
});

Deno.test("summary JSON escapes C1 controls and bidi overrides like the event JSON", async () => {
  const chunks: string[] = [];
  const w = new LineWriter({ write: (p: Uint8Array) => (chunks.push(new TextDecoder().decode(p)), p.length) });
  const r = new SummaryRenderer(w, "json");
  r.event(sampleEvent({ container: "a\u009b31m\u202eb", exe: "/x\x1b" }));
  r.close();
  await r.settle(1000);
  const line = chunks.join("").trim();
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\u0080-\u009f\u202e\x1b]/.test(line), line);
  assert.equal(JSON.parse(line).container, "a\u009b31m\u202eb");
});

Deno.test("inbound flows group by client and local port; close records add bytes each way and the longest duration", () => {
  const t = new FlowTable();
  const accepted = { event: "accept", direction: "inbound", sport: 8080, daddr: "10.0.0.9" } as const;
  t.add(sampleEvent({ ...accepted, dport: 50001 }));
  t.add(sampleEvent({ ...accepted, dport: 50002 })); // another client port: the same flow
  const closed = { ...accepted, event: "close", status: "closed", closedBy: "remote" } as const;
  t.add(sampleEvent({ ...closed, dport: 50001, bytesSent: 1000, bytesReceived: 10, durationMs: 5 }));
  t.add(sampleEvent({ ...closed, dport: 50002, bytesSent: 24, bytesReceived: 2, durationMs: 900 }));
  const flows = t.flows();
  assert.deepEqual(
    flows.map((f) => [f.direction, f.daddr, f.dport, f.status, f.count, f.bytesSent, f.bytesReceived, f.maxDurationMs]),
    [
      ["inbound", "10.0.0.9", 8080, "established", 2, undefined, undefined, undefined],
      ["inbound", "10.0.0.9", 8080, "closed", 2, 1024, 12, 900],
    ],
  );
  const rows = t.rows();
  assert.ok(rows[0].includes("10.0.0.9 → :8080"), rows[0].join("|"));
  assert.ok(rows[1].includes("1.0K/12B 900ms"), rows[1].join("|"));
});

Deno.test("a flow record adds what it counted: a row per status, and its closes with their totals", () => {
  const t = new FlowTable();
  const flow = (connections: number, statuses: [string, number][], closes: number, bytesSent: number) =>
    sampleEvent({
      event: "flow",
      status: statuses[0][0] as never,
      bytesSent,
      durationMs: 40,
      flow: sampleFlow({ connections, statuses: statuses as never, closes, firstSeen: 1n, lastSeen: 2n }),
    });
  t.add(flow(10, [["established", 9], ["refused", 1]], 9, 900));
  t.add(flow(5, [["established", 5]], 5, 500));
  // The same flow reported one by one adds to the same rows.
  t.add(sampleEvent({}));
  assert.deepEqual(
    t.flows().map((f) => [f.status, f.count, f.bytesSent, f.maxDurationMs]),
    [["established", 15, undefined, undefined], ["closed", 14, 1400, 40], ["refused", 1, undefined, undefined]],
  );
});
