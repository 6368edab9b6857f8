import assert from "node:assert/strict";
import type { ConnEvent } from "../event.ts";
import { sampleEvent, sampleFlow } from "../testdata/event.ts";
import { dotString, FlowMap, mermaidText } from "./map.ts";

const web = { container: "web", containerId: "w".repeat(64), image: "web:1", pod: "", namespace: "" };
const db = { container: "db", containerId: "d".repeat(64), image: "postgres:16", pod: "", namespace: "" };
const fromWeb = { ...web, containerRuntime: "docker" };
const atDb = { ...db, containerRuntime: "docker" };

/** One connection web -> db:5432 as both ends report it: connect, accept, and each end's close. */
function connection(sport: number): ConnEvent[] {
  const out = { ...fromWeb, saddr: "172.17.0.2", sport, daddr: "172.17.0.3", dport: 5432, peer: db };
  const inn = {
    ...atDb,
    direction: "inbound" as const,
    saddr: "172.17.0.3",
    sport: 5432,
    daddr: "172.17.0.2",
    dport: sport,
    peer: web,
  };
  return [
    sampleEvent({ ...out, event: "connect" }),
    sampleEvent({ ...inn, event: "accept" }),
    sampleEvent({ ...out, event: "close", status: "closed", bytesSent: 1000, bytesReceived: 3000 }),
    sampleEvent({ ...inn, event: "close", status: "closed", bytesSent: 3000, bytesReceived: 1000 }),
  ];
}

Deno.test("map: a connection between two local containers is one edge, counted once, with its bytes", () => {
  const m = new FlowMap(100);
  for (const e of [...connection(40000), ...connection(40001)]) m.add(e);
  // A host program's connect to the outside, by its DNS name; a pending record counts no connection.
  const host = { container: "", containerId: "", image: "", exe: "/usr/bin/curl", dnsName: "example.com", dport: 443 };
  m.add(sampleEvent({ ...host, status: "pending" }));
  m.add(sampleEvent(host));
  assert.equal(m.size, 2);
  assert.equal(
    m.text("dot"),
    [
      "digraph lightmon {",
      "  rankdir=LR;",
      '  node [fontname="Helvetica", fontsize=10];',
      '  edge [fontname="Helvetica", fontsize=9];',
      '  n0 [shape=box, label="web\\nweb:1"];',
      '  n1 [shape=box, label="db\\npostgres:16"];',
      '  n2 [shape=box, style=rounded, label="/usr/bin/curl\\nhost"];',
      '  n3 [shape=ellipse, label="example.com"];',
      '  n0 -> n1 [label=":5432\\n2 conns\\n2.0K / 5.9K"];',
      '  n2 -> n3 [label=":443\\n1 conn"];',
      "}",
    ].join("\n"),
  );
  assert.equal(
    m.text("mermaid"),
    [
      "flowchart LR",
      '  n0["web<br>web:1"]',
      '  n1["db<br>postgres:16"]',
      '  n2("/usr/bin/curl<br>host")',
      '  n3(["example.com"])',
      '  n0 -->|":5432<br>2 conns<br>2.0K / 5.9K"| n1',
      '  n2 -->|":443<br>1 conn"| n3',
    ].join("\n"),
  );
});

Deno.test("map: only the accepting end seen (a filter kept it) still draws the edge from the client", () => {
  const m = new FlowMap(100);
  for (const e of connection(40000).filter((e) => e.direction === "inbound")) m.add(e);
  // The accepting end's node comes first (it reported), the edge still goes from web to db.
  assert.match(m.text("dot"), /n0 \[shape=box, label="db\\npostgres:16"\]/);
  assert.match(m.text("dot"), /n1 -> n0 \[label=":5432\\n1 conn\\n1000B \/ 2\.9K"\]/);
});

Deno.test("map: flow records add their connections; pods are their namespace and name; bounded, and says so", () => {
  const m = new FlowMap(1);
  const pod = { ...db, pod: "api-x2kq4", namespace: "shop" };
  m.add(sampleEvent({ ...fromWeb, event: "flow", peer: pod, dport: 8080, flow: sampleFlow({ connections: 7 }) }));
  m.add(sampleEvent({ ...fromWeb, dport: 9999 }));
  assert.match(m.text("dot"), /n1 \[shape=box, label="shop\/api-x2kq4\\npod"\]/);
  assert.match(m.text("dot"), /n0 -> n1 \[label=":8080\\n7 conns"\]/);
  assert.match(m.text("dot"), /\/\/ 1 records of flows past the first 1 are not drawn/);
  assert.equal(m.overflow, 1);
});

Deno.test("map: hostile names neither end a label nor add markup", () => {
  assert.equal(dotString('a"b\\n\x1b[2J'), '"a\\"b\\\\n\\\\x1b[2J"');
  assert.equal(dotString("two\nlines"), '"two\\nlines"');
  assert.equal(mermaidText(['x"]-->y<script>']), "x#34;#93;--#62;y#60;script#62;");
  assert.equal(mermaidText(["a|b", "c"]), "a#124;b<br>c");
  const m = new FlowMap(10);
  m.add(sampleEvent({ container: "", containerId: "", exe: '/tmp/"; rankdir=TB; x="' }));
  for (const line of m.text("dot").split("\n").slice(4, -1)) assert.match(line, /^ {2}n\d+ (\[|-> n\d+ \[)/, line);
});

Deno.test("map: a host program's connection to a container, seen at both ends, is one edge from the program", () => {
  const m = new FlowMap(100);
  const host = { container: "", containerId: "", image: "", exe: "/usr/bin/psql", saddr: "172.17.0.1", sport: 41000 };
  const out = { ...host, daddr: "172.17.0.3", dport: 5432, peer: db };
  // The container sees the bridge's address, which no container holds.
  const inn = { ...atDb, direction: "inbound" as const, saddr: "172.17.0.3", sport: 5432, daddr: "172.17.0.1" };
  m.add(sampleEvent({ ...out, event: "connect" }));
  m.add(sampleEvent({ ...inn, dport: 41000, event: "accept" }));
  m.add(sampleEvent({ ...inn, dport: 41001, event: "accept" })); // its opener was not seen: the address
  const dot = m.text("dot");
  assert.match(dot, /n0 \[shape=box, style=rounded, label="\/usr\/bin\/psql\\nhost"\]/);
  assert.match(dot, /n0 -> n1 \[label=":5432\\n1 conn"\]/);
  assert.match(dot, /n2 \[shape=ellipse, label="172\.17\.0\.1"\]/);
  assert.match(dot, /n2 -> n1 \[label=":5432\\n1 conn"\]/);
  assert.equal(m.size, 2);
});

Deno.test("map: past its cap of edges it keeps no new node either, however many peers call", () => {
  const m = new FlowMap(2);
  for (let i = 0; i < 1000; i++) {
    m.add(sampleEvent({ direction: "inbound", event: "accept", daddr: `10.0.${i >> 8}.${i & 255}`, sport: 22 }));
  }
  assert.equal(m.size, 2);
  assert.equal(m.overflow, 998);
  const dot = m.text("dot");
  assert.equal(dot.match(/ \[shape=/g)?.length, 3, dot); // sshd's node and two callers
  assert.match(dot, /998 records of flows past the first 2 are not drawn/);
});
