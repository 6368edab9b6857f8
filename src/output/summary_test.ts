import assert from "node:assert/strict";
import { sampleEvent } from "../testdata/event.ts";
import { FlowTable } from "./summary.ts";

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
