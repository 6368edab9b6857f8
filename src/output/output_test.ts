import type { ConnEvent } from "../event.ts";
import assert from "node:assert/strict";
import { sampleEvent, sampleFlow } from "../testdata/event.ts";
import { JSON_FIELDS, JsonBytes, toJson } from "./json.ts";
import { forTerminal, jsonString } from "../text/sanitize.ts";
import { fitWidths, keepEnd, TableRenderer } from "./table.ts";
import { rfc3339Nano } from "../text/time.ts";
import { humanBytes, humanDuration } from "../fields.ts";

Deno.test("JSON events carry the design's keys, spelled exactly, in order", () => {
  const e = JSON.parse(toJson(sampleEvent()));
  const perConnection = ["tid", "saddr", "latencyUs"];
  assert.deepEqual(
    Object.keys(e),
    JSON_FIELDS.filter((f) => !f.when || perConnection.includes(f.key)).map((f) => f.key),
  );
  // A close record with a connection id, to a local container, checked against a baseline, carries every key.
  const peer = { container: "db", containerId: "c0ffee", image: "postgres:16", pod: "", namespace: "" };
  const close = JSON.parse(
    toJson(sampleEvent({ event: "close", connId: 7, status: "closed", closedBy: "local", novel: true, peer })),
  );
  const dnsOnly = ["query", "qtype", "rcode", "answers"];
  const flowOnly = [
    "connections",
    "statuses",
    "processes",
    "closes",
    "firstSeen",
    "lastSeen",
    "intervalStart",
    "intervalEnd",
    "flowCause",
    "folded",
  ];
  assert.deepEqual(
    Object.keys(close),
    JSON_FIELDS.map((f) => f.key).filter((k) => !dnsOnly.includes(k) && !flowOnly.includes(k)),
  );
  // A flow record: its own keys and the closes' totals, none of one connection's.
  const flow = JSON.parse(toJson(sampleEvent({
    event: "flow",
    bytesSent: 10,
    flow: sampleFlow({ connections: 3, statuses: [["established", 2], ["refused", 1]], closes: 2, cause: "ring-busy" }),
  })));
  for (const k of [...perConnection, "connId", ...dnsOnly, "retransmits", "rttUs", "closedBy"]) {
    assert.ok(!(k in flow), `${k} is not on a flow record`);
  }
  assert.deepEqual(Object.keys(flow).filter((k) => flowOnly.includes(k)), flowOnly);
  assert.deepEqual(flow.statuses, { established: 2, refused: 1 });
  assert.equal(flow.flowCause, "ring-busy");
  assert.equal(flow.bytesSent, 10);
  assert.equal(close.novel, true);
  assert.equal(close.peerContainer, "db");
  assert.equal(close.peerImage, "postgres:16");
  const dns = JSON.parse(toJson(sampleEvent({ event: "dns", query: "a.test", qtype: "A", rcode: "NOERROR" })));
  assert.deepEqual(Object.keys(dns).filter((k) => dnsOnly.includes(k)), dnsOnly);
  assert.deepEqual(dns.answers, []);
  assert.equal(close.connId, "7");
  assert.equal(close.existing, false);
  for (
    const k of [
      "kernelTime",
      "time",
      "pid",
      "comm",
      "addressFamily",
      "saddr",
      "sport",
      "daddr",
      "dport",
      "container",
      "tid",
      "ppid",
      "uid",
      "user",
      "exe",
      "args",
      "protocol",
      "direction",
      "event",
      "status",
      "latencyUs",
      "containerId",
      "image",
      "pod",
      "namespace",
      "cgroupId",
      "mntns",
      "netns",
    ]
  ) assert.ok(k in e, k);
  assert.equal(e.kernelTime, "13898485459656");
  assert.equal(e.addressFamily, "AF_INET");
  assert.equal(e.protocol, "tcp");
  assert.deepEqual(e.args, ["busybox", "wget", "www.example.com"]);
  assert.equal(JSON.parse(toJson(sampleEvent({ family: 6 }))).addressFamily, "AF_INET6");
});

Deno.test("JSON escapes C1 controls and bidi overrides that JSON.stringify leaves raw", () => {
  const s = jsonString("a\u009b31mb\u202ec\x1b");
  assert.equal(s, '"a\\u009b31mb\\u202ec\\u001b"');
  assert.equal(JSON.parse(s), "a\u009b31mb\u202ec\x1b");
});

Deno.test("terminal text shows control characters as visible escapes", () => {
  assert.equal(forTerminal("evil\x1b[2J\x07"), "evil\\x1b[2J\\x07");
  assert.equal(forTerminal("\u202egnp.exe"), "\\u202egnp.exe");
  assert.equal(forTerminal("plain név"), "plain név");
});

Deno.test("timestamps are RFC 3339 with nine fractional digits", () => {
  const t = rfc3339Nano(1713334189000000007n);
  assert.match(t, /^2024-04-1\dT\d\d:\d\d:49\.000000007(Z|[+-]\d\d:\d\d)$/);
});

Deno.test("the table fits the terminal width exactly", () => {
  for (const w of [80, 120, 200]) {
    const r = new TableRenderer(w);
    const lines = [
      ...r.render(sampleEvent()),
      ...r.render(sampleEvent({ family: 6, daddr: "2001:db8::1" })),
      ...r.footer(),
    ];
    for (const l of lines) assert.equal([...l].length, w, `width ${w}: ${l}`);
  }
  assert.equal(fitWidths(80).length, 5);
  assert.equal(fitWidths(120).length, 8);
  assert.equal(fitWidths(200).length, 11);
});

Deno.test("with close records, every width from 80 shows a close's bytes and duration, and no line is wider", () => {
  const close = (over: Partial<ConnEvent>) =>
    sampleEvent({
      event: "close",
      status: "closed",
      connId: 7,
      bytesSent: 69_632,
      bytesReceived: 0,
      durationMs: 12,
      closedBy: "local",
      ...over,
    });
  for (let w = 80; w <= 200; w++) {
    const r = new TableRenderer(w, true, false, true);
    const lines = [
      ...r.render(sampleEvent({ daddr: "255.255.255.255", dport: 65535 })),
      ...r.render(close({})),
      ...r.render(close({ bytesSent: 1023 * 2 ** 20, bytesReceived: 1023 * 2 ** 20, durationMs: 700_000 })),
      ...r.render(close({ closedBy: "reset", bytesSent: 100, durationMs: 5 })),
      ...r.footer(),
    ];
    for (const l of lines) assert.equal([...l].length, w, `width ${w}: ${l}`);
    const rows = lines.slice(3, 7);
    assert.match(rows[0], /255\.255\.255\.255:65535/, `width ${w}`);
    assert.match(rows[1], /68K\/0B 12ms/, `width ${w}`);
    assert.match(rows[2], /1023M\/1023M 11\.7m/, `width ${w}`);
    assert.match(rows[3], /100B\/0B 5ms/, `width ${w}`);
    if (w < 120) {
      assert.match(rows[1], /│ 68K\/0B 12ms {8}│/, `width ${w}`);
      assert.match(rows[3], /│ reset 100B\/0B 5ms {2}│/, `width ${w}`);
      assert.match(rows[1], /│ (…|\/usr)\/bin\/busybox +│$/, `width ${w}`);
    }
  }
});

Deno.test("at 80 columns the destination, the status and the program's name are never cut", () => {
  const r = new TableRenderer(80);
  const [, head] = r.render(sampleEvent());
  assert.match(head, /│ {4}│ REMOTE\s+│ STATUS\s+│ CONTAINER │ PROCESS\s+│/);
  const widest = sampleEvent({
    daddr: "255.255.255.255",
    dport: 65535,
    status: "unreachable",
    exe: "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
  });
  const [row] = r.render(widest);
  assert.match(row, /│ 255\.255\.255\.255:65535\s*│ unreachable │/);
  assert.match(row, /│ …\/bin\/java\s+│$/); // whole directories go before the name
  assert.equal(keepEnd("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", 20), "…/bin/java");
  assert.equal(keepEnd("/opt/a-name-longer-than-the-cell", 20), "…onger-than-the-cell");
  assert.equal(keepEnd("no-slashes-but-far-too-long", 10), "…-too-long");
  assert.equal([...row].length, 80);
});

Deno.test("accept and close rows: arrow, status, bytes in human units, duration", () => {
  const r = new TableRenderer(200);
  r.render(sampleEvent());
  const [accept] = r.render(sampleEvent({ event: "accept", direction: "inbound", sport: 80, dport: 51000 }));
  assert.match(accept, /│ <- │ 183\.2\.172\.17:51000\s+│ accepted\s+│\s+│/);
  const [close] = r.render(
    sampleEvent({
      event: "close",
      status: "closed",
      closedBy: "remote",
      bytesSent: 1048576,
      bytesReceived: 3 * 1048576 + 5000,
      durationMs: 1250,
    }),
  );
  assert.match(close, /│ -> │ 183\.2\.172\.17:443\s+│ peer closed │ 1\.0M\/3\.0M 1\.3s\s+│/);
  assert.equal(humanBytes(512), "512B");
  assert.equal(humanBytes(10_000), "9.8K");
  assert.equal(humanBytes(1023 * 1024), "1023K");
  assert.equal(humanBytes(5 * 2 ** 40), "5.0T");
  assert.equal(humanDuration(21), "21ms");
  assert.equal(humanDuration(59_940), "59.9s");
  assert.equal(humanDuration(90_000), "1.5m");
  assert.equal(humanDuration(3 * 3_600_000), "3.0h");
  assert.equal(humanDuration(12 * 86_400_000), "12d");
});

Deno.test("the table header is printed once, then one row per event", () => {
  const r = new TableRenderer(160);
  const first = r.render(sampleEvent());
  const second = r.render(sampleEvent({ pid: 7 }));
  assert.equal(first.length, 4); // top border, header, separator, row
  assert.match(
    first[1],
    /│ TIME\s+│ USER\s+│ PID\s+│ AF\s+│ LOCAL\s+│ {4}│ REMOTE\s+│ STATUS\s+│ TX\/RX DURATION\s+│ CONTAINER\s+│ PROCESS\s+│/,
  );
  assert.equal(second.length, 1);
  assert.match(second[0], /│ 7\s+│ v4 │ 10\.1\.8\.14:7825\s+│ -> │ 183\.2\.172\.17:443/);
});

Deno.test("the table's fast path draws exactly what cli-table3 draws", () => {
  const events = [
    sampleEvent(),
    sampleEvent({ exe: "/a/very/long/path/that/will/certainly/not/fit/into/the/process/column/at/all/bin/tool" }),
    sampleEvent({ family: 6, saddr: "fe80::1234:5678:9abc:def0", daddr: "2001:db8::1", container: "" }),
    sampleEvent({ user: "", uid: 1000, status: "unreachable", container: "x".repeat(40) }),
    sampleEvent({ exe: "", comm: "" }),
    sampleEvent({ event: "close", status: "closed", closedBy: "reset", bytesSent: 10, durationMs: 5 }),
    // Not printable ASCII (drawn by cli-table3 on both sides): in the part a cut keeps, in the part it drops, a control.
    sampleEvent({ container: "café" }),
    sampleEvent({ exe: "/é/very/long/path/that/will/certainly/not/fit/into/the/process/column/at/all/bin/tool" }),
    sampleEvent({ container: "x".repeat(38) + "é" }),
    sampleEvent({ comm: "a\x1bb", exe: "" }),
  ];
  for (const w of [80, 132, 200]) {
    const fast = new TableRenderer(w);
    const slow = new TableRenderer(w, false);
    for (const e of events) assert.deepEqual(fast.render(e), slow.render(e), `width ${w}`);
    // The fast path took the ASCII rows, cut or not, and left the others to cli-table3.
    const drawn = events.map((e) => fast.writeRow(e, new JsonBytes()));
    assert.deepEqual(drawn, [true, true, true, true, true, true, false, false, false, false], `width ${w}`);
  }
});

Deno.test("a hostile DNS name never reaches the JSON or the terminal raw", () => {
  const e = sampleEvent({ dnsName: "\x1b]0;pwn\x07\u202egnp.\u009b31m.test" });
  const json = toJson(e);
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\x1b\x07\u202e\u009b]/.test(json), json);
  assert.equal(JSON.parse(json).dnsName, e.dnsName);
  const r = new TableRenderer(120);
  const lines = [...r.render(e), ...r.render(e)];
  // deno-lint-ignore no-control-regex
  for (const l of lines) assert.ok(!/[\x1b\x07\u202e\u009b]/.test(l), l);
  assert.match(lines.at(-1)!, /\\x1b\]0;pwn\\x07/);
});

Deno.test("numbers are written digit for digit as String() writes them, at every length", () => {
  const ns = [0, 1, 9, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 4026531840, Number.MAX_SAFE_INTEGER];
  for (let p = 1; p <= 15; p++) ns.push(10 ** p - 1, 10 ** p, 10 ** p + 1);
  const w = new JsonBytes();
  for (const n of ns) {
    w.pos = 0;
    w.uint(n);
    assert.equal(new TextDecoder().decode(w.buf.subarray(0, w.pos)), String(n));
  }
});
