import assert from "node:assert/strict";
import { decodeRecord } from "./decode.ts";
import { CONN, CONN_SIZE, CWD_COMPLETE, CWD_NAME, EXEC, EXEC_SIZE, KIND } from "./layout.ts";

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
  new TextEncoder().encodeInto(`docker-${"a".repeat(64)}.scope`, new Uint8Array(v.buffer, CONN.cgroup.offset, 96));
  return v;
}

const mapped = (a: number[]) => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a];

Deno.test("IPv4 connect records decode to dotted quads and host-order ports", () => {
  const r = decodeRecord(connRecord(2, [10, 0, 0, 5], [93, 184, 216, 34]));
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

Deno.test("repeated comm and cgroup names are reused, and any byte that changes is seen", () => {
  const names = ["connector", "connector", "connectoR", "conn", "connector", "", "ünï", "ünï", "ünï2", "x".repeat(16)];
  const cgroups = ["docker-abc.scope", "docker-abc.scope", "docker-abd.scope", "", "y".repeat(96)];
  const enc = new TextEncoder();
  for (let i = 0; i < 40; i++) {
    const v = connRecord(2, [10, 0, 0, i], [10, 0, 1, 255 - i]);
    const comm = names[i % names.length];
    const cgroup = cgroups[i % cgroups.length];
    new Uint8Array(v.buffer, CONN.comm.offset, CONN.comm.size).fill(0);
    enc.encodeInto(comm, new Uint8Array(v.buffer, CONN.comm.offset, CONN.comm.size));
    new Uint8Array(v.buffer, CONN.cgroup.offset, CONN.cgroup.size).fill(0);
    enc.encodeInto(cgroup, new Uint8Array(v.buffer, CONN.cgroup.offset, CONN.cgroup.size));
    const r = decodeRecord(v) as { comm: string; cgroup: string; saddr: string; daddr: string };
    assert.equal(r.comm, comm, `record ${i}`);
    assert.equal(r.cgroup, cgroup, `record ${i}`);
    assert.equal(r.saddr, `10.0.0.${i}`);
    assert.equal(r.daddr, `10.0.1.${255 - i}`);
  }
});
