/**
 * A recorded stream of ring-buffer records, built byte for byte as the kernel lays
 * them out (exec, fork, connect, exit), with hostile strings where a process or a
 * runtime controls the text. The golden test runs it through the whole pipeline
 * and compares every output with the files in `golden/`.
 * @module
 */
import { CgroupCache } from "../capture/cgroups.ts";
import {
  CGROUP_KEY,
  CGROUP_NAMES,
  CONN,
  CONN_SIZE,
  EXEC,
  EXEC_SIZE,
  EXIT,
  EXIT_SIZE,
  FLAG_FIN_ACKED,
  FLAG_FIN_RECEIVED,
  FLAG_INBOUND,
  FORK,
  FORK_SIZE,
  KIND,
} from "../capture/layout.ts";

const enc = new TextEncoder();
const AF_INET = 2;
const AF_INET6 = 10;

function put(v: DataView, at: { offset: number; size: number }, bytes: Uint8Array | string): void {
  const b = typeof bytes === "string" ? enc.encode(bytes) : bytes;
  new Uint8Array(v.buffer, at.offset, at.size).set(b.subarray(0, at.size));
}

interface Conn {
  ts: bigint;
  pid: number;
  start?: bigint;
  procStart?: bigint;
  family?: number;
  saddr: number[];
  daddr: number[];
  sport: number;
  dport: number;
  status?: number;
  comm?: string | Uint8Array;
  cgroup?: string;
  parent?: string;
  uid?: number;
  kind?: "connect" | "accept" | "close";
  connId?: number;
  flags?: number;
  /** Close records: the kernel's raw counters, retransmits, srtt, enum lm_closed_by. */
  sent?: bigint;
  received?: bigint;
  retransmits?: number;
  srtt?: number;
  closedBy?: number;
  /** Close records: the opening's latency the kernel kept, µs. */
  latency?: number;
}

function connect(c: Conn): DataView {
  const v = new DataView(new ArrayBuffer(CONN_SIZE));
  v.setBigUint64(CONN.ts_ns.offset, c.ts, true);
  v.setUint32(CONN.kind.offset, KIND[c.kind ?? "connect"], true);
  v.setUint32(CONN.pid.offset, c.pid, true);
  v.setBigUint64(CONN.conn_id.offset, BigInt(c.connId ?? 0), true);
  v.setUint8(CONN.flags.offset, c.flags ?? 0);
  v.setBigUint64(CONN.bytes_sent.offset, c.sent ?? 0n, true);
  v.setBigUint64(CONN.bytes_received.offset, c.received ?? 0n, true);
  v.setUint32(CONN.retransmits.offset, c.retransmits ?? 0, true);
  v.setUint32(CONN.srtt_us.offset, c.srtt ?? 0, true);
  v.setUint8(CONN.closed_by.offset, c.closedBy ?? 0);
  v.setUint32(CONN.latency_us.offset, c.latency ?? 0, true);
  v.setBigUint64(CONN.start_ns.offset, c.start ?? c.ts - 1_234_567n, true);
  v.setBigUint64(CONN.cgroup_id.offset, BigInt(c.pid) * 7n, true);
  v.setBigUint64(CONN.proc_start_ns.offset, c.procStart ?? BigInt(c.pid) * 1000n, true);
  v.setUint32(CONN.tid.offset, c.pid + 1, true);
  v.setUint32(CONN.ppid.offset, 1, true);
  v.setUint32(CONN.uid.offset, c.uid ?? 0, true);
  v.setUint32(CONN.gid.offset, c.uid ?? 0, true);
  v.setUint32(CONN.mntns.offset, 4026531841, true);
  v.setUint32(CONN.netns.offset, 4026531840, true);
  v.setUint16(CONN.sport.offset, c.sport, true);
  v.setUint16(CONN.dport.offset, c.dport, true);
  v.setUint16(CONN.family.offset, c.family ?? AF_INET, true);
  v.setUint8(CONN.status.offset, c.status ?? 1);
  put(v, CONN.saddr, new Uint8Array(c.saddr));
  put(v, CONN.daddr, new Uint8Array(c.daddr));
  put(v, CONN.comm, c.comm ?? "curl");
  v.setBigUint64(CONN.cgroup_key.offset, BigInt(cgroupKey(c.cgroup ?? "", c.parent ?? "")), true);
  v.setUint32(CONN.cgroup_hierarchy.offset, 3, true);
  return v;
}

/** The stream's cgroups by the key its records carry: what the kernel's lm_cgroups would hold. */
const CGROUPS = new Map<number, { cgroup: string; parent: string }>();

function cgroupKey(cgroup: string, parent: string): number {
  if (!cgroup && !parent) return 0;
  for (const [key, n] of CGROUPS) if (n.cgroup === cgroup && n.parent === parent) return key;
  const key = 0x1_0000_0100 + CGROUPS.size; // past 32 bits: both halves of the id are read
  CGROUPS.set(key, { cgroup, parent });
  return key;
}

/** The names of the stream's cgroups, read as from the kernel's table (after goldenRecords()). */
export function goldenCgroups(): CgroupCache {
  return new CgroupCache((key, value) => {
    const k = new DataView(key.buffer);
    const n = CGROUPS.get(Number(k.getBigUint64(CGROUP_KEY.id.offset, true)));
    if (!n || k.getUint32(CGROUP_KEY.hierarchy.offset, true) !== 3) return false;
    const v = new DataView(value.buffer);
    value.fill(0);
    put(v, CGROUP_NAMES.cgroup, n.cgroup);
    put(v, CGROUP_NAMES.cgroup_parent, n.parent);
    return true;
  });
}

function exec(pid: number, filename: string, args: string[], comm = "x"): DataView {
  const v = new DataView(new ArrayBuffer(EXEC_SIZE));
  v.setBigUint64(EXEC.ts_ns.offset, 1n, true);
  v.setUint32(EXEC.kind.offset, KIND.exec, true);
  v.setUint32(EXEC.pid.offset, pid, true);
  v.setBigUint64(EXEC.proc_start_ns.offset, BigInt(pid) * 1000n, true);
  v.setUint32(EXEC.ppid.offset, 1, true);
  const argv = enc.encode(args.map((a) => a + "\0").join("")).subarray(0, EXEC.args.size);
  put(v, EXEC.args, argv);
  v.setUint32(EXEC.args_len.offset, argv.length, true);
  put(v, EXEC.filename, filename);
  v.setUint32(EXEC.filename_len.offset, enc.encode(filename).length, true);
  put(v, EXEC.comm, comm);
  return v;
}

function fork(pid: number, ppid: number): DataView {
  const v = new DataView(new ArrayBuffer(FORK_SIZE));
  v.setUint32(FORK.kind.offset, KIND.fork, true);
  v.setUint32(FORK.pid.offset, pid, true);
  v.setBigUint64(FORK.proc_start_ns.offset, BigInt(pid) * 1000n, true);
  v.setUint32(FORK.ppid.offset, ppid, true);
  v.setBigUint64(FORK.parent_start_ns.offset, BigInt(ppid) * 1000n, true);
  return v;
}

function exit(pid: number): DataView {
  const v = new DataView(new ArrayBuffer(EXIT_SIZE));
  v.setUint32(EXIT.kind.offset, KIND.exit, true);
  v.setUint32(EXIT.pid.offset, pid, true);
  v.setBigUint64(EXIT.proc_start_ns.offset, BigInt(pid) * 1000n, true);
  return v;
}

const ID_A = "a1".repeat(32);
const ID_B = "b2".repeat(32);
const ID_C = "c3".repeat(32);
const lo4 = [127, 0, 0, 1];
const lo6 = [...Array(15).fill(0), 1];
const mapped = (a: number[]) => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a];
const db8 = (last: number) => [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), last];

/** Container metadata the golden run's runtime "knows", hostile names included. */
export const GOLDEN_CONTAINERS: Readonly<
  Record<string, { name: string; image: string; pod: string; namespace: string }>
> = {
  [ID_A]: { name: "web-1", image: "nginx:1.25", pod: "", namespace: "" },
  [ID_B]: {
    name: "evil\x1b[2J\u009b31m\u202egnp",
    image: 'img"with\\quotes',
    pod: "web-7f9c-x2kq4",
    namespace: "prod",
  },
};

/** The golden run's passwd(5). */
export const GOLDEN_PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";

/** The boot-to-wall offset of the golden run (ns). */
export const GOLDEN_WALL_OFFSET = 1_713_334_000_000_000_000n;

/** The stream, in ring order. */
export function goldenRecords(): DataView[] {
  const t = (s: number) => BigInt(s) * 1_000_000_000n + 123_456_789n;
  return [
    exec(100, "/usr/bin/curl", ["curl", "-s", "http://example/"], "curl"),
    exec(101, "/opt/evil\x1b]0;pwned\x07/bin/tool", ["tool", "--name=\u202eexe.txt", 'q"uote\\back', "tab\there"]),
    exec(102, "/usr/bin/python3", ["python3", "-c", "é ünïcode ✓ 日本"], "python3"),
    exec(103, "/usr/bin/long", ["long", "x".repeat(600)]),
    exec(104, "/bin/busybox", ["wget", "-q", "-O-", "http://[::1]/"], "wget"),
    fork(105, 100),
    connect({ ts: t(1), pid: 100, saddr: [10, 0, 0, 5], daddr: [93, 184, 216, 34], sport: 40000, dport: 443 }),
    connect({ ts: t(1), pid: 100, saddr: [10, 0, 0, 5], daddr: [93, 184, 216, 34], sport: 40002, dport: 443 }),
    connect({
      ts: t(2),
      pid: 101,
      saddr: lo4,
      daddr: lo4,
      sport: 50000,
      dport: 8080,
      status: 2,
      comm: "ev\x1b[31mil\u0007",
      uid: 1000,
    }),
    connect({ ts: t(2), pid: 102, family: AF_INET6, saddr: lo6, daddr: lo6, sport: 50001, dport: 22, status: 3 }),
    connect({
      ts: t(3),
      pid: 102,
      family: AF_INET6,
      saddr: mapped(lo4),
      daddr: mapped(lo4),
      sport: 50002,
      dport: 80,
      status: 6,
    }),
    connect({
      ts: t(3),
      pid: 103,
      family: AF_INET6,
      saddr: db8(5),
      daddr: db8(9),
      sport: 41712,
      dport: 5432,
      status: 4,
      uid: 4242,
    }),
    connect({
      ts: t(4),
      pid: 104,
      saddr: [172, 17, 0, 2],
      daddr: [10, 0, 3, 7],
      sport: 34250,
      dport: 5432,
      cgroup: `docker-${ID_A}.scope`,
      parent: "system.slice",
      comm: "wget",
    }),
    connect({
      ts: t(4),
      pid: 104,
      saddr: [172, 17, 0, 2],
      daddr: [10, 0, 3, 7],
      sport: 34251,
      dport: 5432,
      status: 5,
      cgroup: `docker-${ID_A}.scope`,
      parent: "system.slice",
      comm: "wget",
    }),
    connect({
      ts: t(5),
      pid: 106,
      saddr: [10, 1, 0, 4],
      daddr: [10, 1, 0, 9],
      sport: 1234,
      dport: 53,
      status: 7,
      cgroup: `cri-containerd-${ID_B}.scope`,
      parent: "kubepods-besteffort-pod1b2c3d4e_1111_2222_3333_444455556666.slice",
      comm: new Uint8Array([0xe2, 0x80, 0xae, 0x66, 0xc3, 0x28, 0x41]),
    }),
    connect({
      ts: t(5),
      pid: 107,
      saddr: [10, 1, 0, 4],
      daddr: [10, 1, 0, 9],
      sport: 1235,
      dport: 53,
      status: 8,
      cgroup: ID_C,
      parent: "docker",
      comm: "",
    }),
    connect({ ts: t(6), pid: 105, saddr: lo4, daddr: lo4, sport: 60000, dport: 9, status: 9 }),
    exit(100),
    connect({ ts: t(7), pid: 100, saddr: [10, 0, 0, 5], daddr: [93, 184, 216, 34], sport: 40004, dport: 443 }),
    exec(100, "./relative/bin", ["./relative/bin"]),
    connect({ ts: t(8), pid: 100, saddr: [10, 0, 0, 5], daddr: [93, 184, 216, 35], sport: 40006, dport: 443 }),
    // The whole connection (--events all): an outbound connection and an accepted one, then their closes,
    // which carry the task the kernel kept with each; the join lends them their opening record's words too.
    connect({ ts: t(9), pid: 102, saddr: [10, 0, 0, 5], daddr: [10, 0, 0, 8], sport: 40010, dport: 8443, connId: 11 }),
    connect({
      kind: "accept",
      ts: t(9),
      start: t(9) - 40_000n,
      pid: 104,
      saddr: [172, 17, 0, 2],
      daddr: [10, 0, 0, 5],
      sport: 80,
      dport: 51000,
      connId: 12,
      flags: FLAG_INBOUND,
      cgroup: `docker-${ID_A}.scope`,
      parent: "system.slice",
      comm: "nginx",
    }),
    connect({
      kind: "close",
      ts: t(9) + 5_000_000n,
      start: t(9) - 40_000n,
      pid: 104,
      saddr: [172, 17, 0, 2],
      daddr: [10, 0, 0, 5],
      sport: 80,
      dport: 51000,
      status: 11,
      comm: "nginx",
      cgroup: `docker-${ID_A}.scope`,
      parent: "system.slice",
      connId: 12,
      flags: FLAG_INBOUND,
      latency: 40, // the accept's: established t(9) - 40 µs, accepted at t(9)
      sent: 5000n,
      received: 120n,
      srtt: 31,
      closedBy: 3,
    }),
    connect({
      kind: "close",
      ts: t(11) + 250_000_000n,
      start: t(9),
      pid: 102,
      procStart: 102_000n,
      saddr: [10, 0, 0, 5],
      daddr: [10, 0, 0, 8],
      sport: 40010,
      dport: 8443,
      status: 11,
      connId: 11,
      latency: 1234, // the connect's handshake
      flags: FLAG_FIN_ACKED | FLAG_FIN_RECEIVED,
      sent: 1_048_578n, // SYN + 1 MiB + FIN
      received: 3_145_729n, // 3 MiB + FIN
      retransmits: 1,
      srtt: 250,
      closedBy: 1,
    }),
  ];
}
