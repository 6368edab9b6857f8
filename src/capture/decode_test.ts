import assert from "node:assert/strict";
import { decodeRecord, DecodeStage, type RawConnect } from "./decode.ts";
import { CgroupCache } from "./cgroups.ts";
import {
  CGROUP_KEY,
  CGROUP_NAMES,
  CONN,
  CONN_SIZE,
  CWD_COMPLETE,
  CWD_NAME,
  EXEC,
  EXEC_SIZE,
  FLAG_EXISTING,
  FLAG_INBOUND,
  KIND,
} from "./layout.ts";

/** lm_cgroups as a test has it: names by (id, hierarchy). */
function cgroupTable(names: Map<string, string>): CgroupCache {
  return new CgroupCache((key, value) => {
    const k = new DataView(key.buffer);
    const name = names.get(
      `${k.getBigUint64(CGROUP_KEY.id.offset, true)}/${k.getUint32(CGROUP_KEY.hierarchy.offset, true)}`,
    );
    if (name === undefined) return false;
    value.fill(0);
    new TextEncoder().encodeInto(name, value.subarray(CGROUP_NAMES.cgroup.offset, CGROUP_NAMES.cgroup.offset + 96));
    return true;
  });
}

const setCgroup = (v: DataView, id: bigint, hierarchy = 0) => {
  v.setBigUint64(CONN.cgroup_key.offset, id, true);
  v.setUint32(CONN.cgroup_hierarchy.offset, hierarchy, true);
};

function connRecord(family: number, saddr: number[], daddr: number[], status = 1): DataView {
  const v = new DataView(new ArrayBuffer(CONN_SIZE));
  v.setBigUint64(CONN.ts_ns.offset, 2_000_000n, true);
  v.setUint32(CONN.kind.offset, KIND.connect, true);
  v.setUint32(CONN.pid.offset, 42, true);
  v.setBigUint64(CONN.start_ns.offset, 1_000_000n, true);
  v.setUint16(CONN.sport.offset, 40000, true);
  v.setUint16(CONN.dport.offset, 443, true);
  v.setUint16(CONN.family.offset, family, true);
  v.setUint8(CONN.status.offset, status);
  saddr.forEach((b, i) => v.setUint8(CONN.saddr.offset + i, b));
  daddr.forEach((b, i) => v.setUint8(CONN.daddr.offset + i, b));
  new TextEncoder().encodeInto("curl\0garbage", new Uint8Array(v.buffer, CONN.comm.offset, 16));
  setCgroup(v, 7n);
  return v;
}

/** A run that asks nothing of the test. */
const QUIET = { log: () => {}, stop: () => {}, flushSoon: () => {} };

const mapped = (a: number[]) => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a];

Deno.test("IPv4 connect records decode to dotted quads and host-order ports", () => {
  const r = decodeRecord(
    connRecord(2, [10, 0, 0, 5], [93, 184, 216, 34]),
    cgroupTable(new Map([["7/0", `docker-${"a".repeat(64)}.scope`]])),
  );
  assert.ok(r?.kind === "connect");
  assert.equal(r.family, 4);
  assert.equal(r.saddr, "10.0.0.5");
  assert.equal(r.daddr, "93.184.216.34");
  assert.equal(r.sport, 40000);
  assert.equal(r.dport, 443);
  assert.equal(r.comm, "curl");
  assert.equal(r.cgroup, `docker-${"a".repeat(64)}.scope`);
  assert.equal(r.status, "established");
  assert.equal(r.tsNs - r.startNs, 1_000_000n);
});

Deno.test("v4-mapped IPv6 connects are reported as IPv4 with plain addresses", () => {
  const r = decodeRecord(connRecord(10, mapped([127, 0, 0, 1]), mapped([127, 0, 0, 1])));
  assert.ok(r?.kind === "connect");
  assert.equal(r.family, 4);
  assert.equal(r.saddr, "127.0.0.1");
  assert.equal(r.daddr, "127.0.0.1");
});

Deno.test("IPv6 addresses are printed in RFC 5952 form", () => {
  const lo = [...Array(15).fill(0), 1];
  const r = decodeRecord(connRecord(10, lo, [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 0x01], 2));
  assert.ok(r?.kind === "connect");
  assert.equal(r.family, 6);
  assert.equal(r.saddr, "::1");
  assert.equal(r.daddr, "2001:db8::1");
  assert.equal(r.status, "refused");
});

Deno.test("exec records split argv on NULs and flag truncation", () => {
  const v = new DataView(new ArrayBuffer(EXEC_SIZE));
  v.setUint32(EXEC.kind.offset, KIND.exec, true);
  v.setUint32(EXEC.pid.offset, 7, true);
  const args = new TextEncoder().encode("nc\0-z\0host\0");
  new Uint8Array(v.buffer, EXEC.args.offset).set(args);
  v.setUint32(EXEC.args_len.offset, args.length, true);
  new TextEncoder().encodeInto("/bin/nc", new Uint8Array(v.buffer, EXEC.filename.offset, 256));
  const r = decodeRecord(v);
  assert.ok(r?.kind === "exec");
  assert.deepEqual(r.args, ["nc", "-z", "host"]);
  assert.equal(r.filename, "/bin/nc");
  assert.equal(r.argsTruncated, false);
  new Uint8Array(v.buffer, EXEC.args.offset, EXEC.args.size).fill(0x41);
  v.setUint32(EXEC.args_len.offset, EXEC.args.size, true);
  const t = decodeRecord(v);
  assert.ok(t?.kind === "exec");
  assert.equal(t.argsTruncated, true);
});

Deno.test("a relative exec's working directory is rebuilt from the kernel's walk", () => {
  const v = new DataView(new ArrayBuffer(EXEC_SIZE));
  v.setUint32(EXEC.kind.offset, KIND.exec, true);
  new TextEncoder().encodeInto("./run", new Uint8Array(v.buffer, EXEC.filename.offset, 256));
  ["sub", "work", "home"].forEach((name, i) =>
    new TextEncoder().encodeInto(name, new Uint8Array(v.buffer, EXEC.cwd.offset + i * CWD_NAME, CWD_NAME))
  );
  v.setUint32(EXEC.cwd_len.offset, 3, true);
  const incomplete = decodeRecord(v);
  assert.ok(incomplete?.kind === "exec");
  assert.equal(incomplete.cwd, undefined, "a walk that did not reach the root says nothing");
  v.setUint32(EXEC.cwd_flags.offset, CWD_COMPLETE, true);
  const r = decodeRecord(v);
  assert.ok(r?.kind === "exec");
  assert.equal(r.cwd, "/home/work/sub");
  v.setUint32(EXEC.cwd_len.offset, 0, true);
  assert.equal((decodeRecord(v) as { cwd?: string }).cwd, "/");
});

Deno.test("unknown record kinds are skipped, not misread", () => {
  const v = new DataView(new ArrayBuffer(32));
  v.setUint32(8, 99, true);
  assert.equal(decodeRecord(v), undefined);
});

Deno.test("repeated comm names are reused, and any byte that changes is seen", () => {
  const names = ["connector", "connector", "connectoR", "conn", "connector", "", "ünï", "ünï", "ünï2", "x".repeat(16)];
  const enc = new TextEncoder();
  for (let i = 0; i < 40; i++) {
    const v = connRecord(2, [10, 0, 0, i], [10, 0, 1, 255 - i]);
    const comm = names[i % names.length];
    new Uint8Array(v.buffer, CONN.comm.offset, CONN.comm.size).fill(0);
    enc.encodeInto(comm, new Uint8Array(v.buffer, CONN.comm.offset, CONN.comm.size));
    const r = decodeRecord(v) as { comm: string; saddr: string; daddr: string };
    assert.equal(r.comm, comm, `record ${i}`);
    assert.equal(r.saddr, `10.0.0.${i}`);
    assert.equal(r.daddr, `10.0.1.${255 - i}`);
  }
});

Deno.test("cgroup names come from the kernel's table by key, once per key; an unknown key names nothing", () => {
  const table = cgroupTable(
    new Map([
      ["7/0", "docker-abc.scope"],
      ["7/3", "other-hierarchy"], // the same node id in another v1 hierarchy is another cgroup
      [`${(1n << 40n) + 7n}/0`, "high-id"], // both halves of the id count
      ["9/0", "y".repeat(96)],
    ]),
  );
  const keys: [bigint, number, string][] = [
    [7n, 0, "docker-abc.scope"],
    [7n, 0, "docker-abc.scope"],
    [7n, 3, "other-hierarchy"],
    [(1n << 40n) + 7n, 0, "high-id"],
    [0n, 0, ""], // the host's
    [9n, 0, "y".repeat(96)],
    [12n, 0, ""], // gone from the table
    [12n, 0, ""], // the same key again at once: not asked twice
    [7n, 0, "docker-abc.scope"],
    [12n, 0, ""], // asked again: it may be back
    [9n, 0, "y".repeat(96)],
  ];
  for (const [id, hierarchy, name] of keys) {
    const v = connRecord(2, [10, 0, 0, 1], [10, 0, 0, 2]);
    setCgroup(v, id, hierarchy);
    const r = decodeRecord(v, table) as { cgroup: string };
    assert.equal(r.cgroup, name, `key ${id}/${hierarchy}`);
  }
  // Read once each (7/0, 7/3, high, 9); 12, which the table did not have, each time it came after another key.
  assert.equal(table.reads, 6);
  assert.equal(table.unknown, 2);
});

Deno.test("the decode stage reads records at their offsets in one view, and counts one shorter than its kind", () => {
  const a = connRecord(2, [127, 0, 0, 1], [127, 0, 0, 2]);
  const b = connRecord(2, [127, 0, 0, 3], [127, 0, 0, 4]);
  const ring = new Uint8Array(3 * CONN_SIZE);
  ring.set(new Uint8Array(a.buffer, a.byteOffset, CONN_SIZE), 8);
  ring.set(new Uint8Array(b.buffer, b.byteOffset, CONN_SIZE), 8 + CONN_SIZE);
  const stage = new DecodeStage();
  const daddrs: string[] = [];
  stage.connect((r) => daddrs.push((r as RawConnect).daddr), QUIET);
  const rec = { view: new DataView(ring.buffer), offset: 8, length: CONN_SIZE };
  stage.push(rec);
  rec.offset = 8 + CONN_SIZE;
  stage.push(rec);
  rec.length = CONN_SIZE - 1; // the next record's bytes would be read as its last
  stage.push(rec);
  rec.length = 2; // not even a kind
  stage.push(rec);
  assert.deepEqual(daddrs, ["127.0.0.2", "127.0.0.4"]);
  assert.equal(stage.counters().shortRecord, 1);
  assert.equal(stage.counters().unknownKind, 1);
  assert.ok(stage.notable.has("shortRecord"));
});

Deno.test("the decode stage decodes every connection record into one object, every field of it each time", () => {
  const close = connRecord(10, [0x20, 1, 0xd, 0xb8, ...new Array(11).fill(0), 1], [
    0x20,
    1,
    0xd,
    0xb8,
    ...new Array(11).fill(0),
    2,
  ]);
  close.setUint32(CONN.kind.offset, KIND.close, true);
  close.setUint8(CONN.flags.offset, FLAG_INBOUND | FLAG_EXISTING);
  close.setBigUint64(CONN.bytes_sent.offset, 5000n, true);
  close.setBigUint64(CONN.bytes_received.offset, 7000n, true);
  close.setUint32(CONN.retransmits.offset, 3, true);
  close.setUint32(CONN.srtt_us.offset, 80, true);
  close.setUint32(CONN.latency_us.offset, 12, true);
  close.setUint8(CONN.closed_by.offset, 1);
  close.setBigUint64(CONN.cgroup_id.offset, 99n, true);
  close.setBigUint64(CONN.proc_start_ns.offset, 5n, true);
  close.setBigUint64(CONN.netns_cookie.offset, 4096n, true);
  close.setUint32(CONN.conn_id.offset, 0x5001, true);
  const connect = connRecord(2, [10, 0, 0, 5], [10, 0, 0, 6]);
  connect.setBigUint64(CONN.cgroup_id.offset, 3n, true);
  const stage = new DecodeStage();
  const seen: RawConnect[] = [];
  const copies: RawConnect[] = [];
  stage.connect((r) => {
    seen.push(r as RawConnect);
    copies.push({ ...(r as RawConnect) });
  }, QUIET);
  for (const v of [close, connect, close]) stage.push({ view: v, offset: 0, length: CONN_SIZE });
  // Nothing of the last record stays in the object: each is what a fresh decode makes.
  assert.deepEqual(copies, [close, connect, close].map((v) => decodeRecord(v)));
  assert.equal(copies[1].bytesSent, 0);
  assert.equal(copies[1].cgroupId, 3n);
  assert.equal(copies[2].cgroupId, 99n);
  assert.ok(seen[0] === seen[1] && seen[1] === seen[2], "one object, reused");
});
