import assert from "node:assert/strict";
import { decodeFlow, FlowStage, FlowTables } from "./flows.ts";
import type { BpfObject } from "../../ffi/libbpf.ts";
import {
  FLOW_EXISTING,
  FLOW_FOLDED,
  FLOW_INBOUND,
  FLOW_KEY,
  FLOW_KEY_SIZE,
  FLOW_OVERFLOW,
  FLOW_STATS,
  FLOW_STATS_SIZE,
} from "./layout.ts";
import type { RawConnect } from "./decode.ts";
import { STATUSES } from "../event.ts";
import { enrich } from "../enrich/enricher.ts";
import { ProcessCache } from "../enrich/process_cache.ts";
import { UserNames } from "../enrich/users.ts";

const AF_INET6 = 10;
const AF_INET = 2;

/** A kernel flow entry, as lm_flows_* holds it. */
function entry(o: {
  pid?: number;
  flags?: number;
  family?: number;
  addr?: number[];
  port?: number;
  lport?: number;
  statuses?: Record<string, number>;
  connections?: number;
  closes?: number;
  sent?: number;
  received?: number;
  comm?: string;
}): { key: DataView; stats: DataView } {
  const key = new DataView(new ArrayBuffer(FLOW_KEY_SIZE));
  const stats = new DataView(new ArrayBuffer(FLOW_STATS_SIZE));
  key.setUint32(FLOW_KEY.pid.offset, o.pid ?? 42, true);
  key.setBigUint64(FLOW_KEY.proc_start_ns.offset, 7n, true);
  key.setUint16(FLOW_KEY.family.offset, o.family ?? AF_INET, true);
  (o.addr ?? [10, 0, 0, 1]).forEach((b, i) => key.setUint8(FLOW_KEY.addr.offset + i, b));
  key.setUint16(FLOW_KEY.port.offset, o.port ?? 443, true);
  key.setUint16(FLOW_KEY.lport.offset, o.lport ?? 0, true);
  key.setUint8(FLOW_KEY.flags.offset, o.flags ?? 0);
  stats.setBigUint64(FLOW_STATS.first_ns.offset, 1000n, true);
  stats.setBigUint64(FLOW_STATS.last_ns.offset, 2000n, true);
  stats.setBigUint64(FLOW_STATS.connections.offset, BigInt(o.connections ?? 0), true);
  stats.setBigUint64(FLOW_STATS.closes.offset, BigInt(o.closes ?? 0), true);
  stats.setBigUint64(FLOW_STATS.bytes_sent.offset, BigInt(o.sent ?? 0), true);
  stats.setBigUint64(FLOW_STATS.bytes_received.offset, BigInt(o.received ?? 0), true);
  for (const [s, n] of Object.entries(o.statuses ?? {})) {
    stats.setBigUint64(FLOW_STATS.statuses.offset + 8 * STATUSES.indexOf(s as never), BigInt(n), true);
  }
  new TextEncoder().encodeInto(o.comm ?? "curl", new Uint8Array(stats.buffer, FLOW_STATS.comm.offset, 16));
  return { key, stats };
}

const INTERVAL = { startNs: 500n, endNs: 3000n };
const decode = (o: Parameters<typeof entry>[0], listened?: (p: number) => boolean) => {
  const { key, stats } = entry(o);
  return decodeFlow(key, stats, INTERVAL, undefined, listened);
};

Deno.test("a kernel flow entry is a flow record: its port on the right side, statuses most first", () => {
  const out = decode({ connections: 5, statuses: { refused: 1, established: 4, pending: 2 }, closes: 4, sent: 90 });
  assert.equal(out.event, "flow");
  assert.deepEqual([out.daddr, out.dport, out.sport, out.inbound], ["10.0.0.1", 443, 0, false]);
  assert.deepEqual(out.flow!.statuses, [["established", 4], ["pending", 2], ["refused", 1]]);
  assert.equal(out.status, "established");
  assert.deepEqual([out.flow!.connections, out.flow!.closes, out.bytesSent], [5, 4, 90]);
  assert.deepEqual([out.tsNs, out.startNs, out.flow!.intervalStartNs, out.flow!.cause], [
    3000n,
    1000n,
    500n,
    "interval",
  ]);
  assert.equal(out.comm, "curl");

  const inbound = decode({ flags: FLOW_INBOUND | FLOW_OVERFLOW, port: 8080, connections: 1 });
  assert.deepEqual([inbound.inbound, inbound.sport, inbound.dport, inbound.flow!.cause], [true, 8080, 0, "ring-busy"]);
});

Deno.test("a v4-mapped IPv6 flow is IPv4; a v6 one keeps its address", () => {
  const mapped = decode({ family: AF_INET6, addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2] });
  assert.deepEqual([mapped.family, mapped.daddr], [4, "127.0.0.2"]);
  const v6 = decode({ family: AF_INET6, addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] });
  assert.deepEqual([v6.family, v6.daddr], [6, "::1"]);
});

Deno.test("an existing connection's flow takes its direction from the ports listened on at the start", () => {
  const listened = (p: number) => p === 22;
  // Accepted on port 22 before the start: inbound, its port the local one, no SYN of ours in its bytes.
  const accepted = decode({ flags: FLOW_EXISTING, port: 50000, lport: 22, closes: 1, sent: 100 }, listened);
  assert.deepEqual([accepted.inbound, accepted.sport, accepted.dport, accepted.bytesSent], [true, 22, 0, 100]);
  // Opened from here: outbound to its port, the SYN taken off its bytes sent.
  const opened = decode({ flags: FLOW_EXISTING, port: 443, lport: 50000, closes: 2, sent: 100 }, listened);
  assert.deepEqual([opened.inbound, opened.dport, opened.bytesSent], [false, 443, 98]);
});

Deno.test("a folded flow names no remote end and no process", () => {
  const f = decode({ flags: FLOW_FOLDED, pid: 0, addr: [], port: 0, connections: 9, comm: "" });
  assert.deepEqual([f.daddr, f.dport, f.pid, f.comm, f.flow!.folded], ["", 0, 0, "", true]);
});

Deno.test("the flow stage counts what its records stand for, by cause, and passes the rest through", () => {
  const stage = new FlowStage();
  const out: unknown[] = [];
  stage.connect((r) => out.push(r), { log: () => {}, stop: () => {}, flushSoon: () => {} });
  const other = { kind: "exit" } as unknown as RawConnect;
  stage.push(other);
  stage.inject([
    decode({ connections: 5, closes: 2 }),
    decode({ flags: FLOW_OVERFLOW, connections: 3 }),
    decode({ flags: FLOW_FOLDED | FLOW_OVERFLOW, connections: 1 }),
  ]);
  assert.equal(out.length, 4);
  assert.deepEqual(stage.counters(), {
    records: 3,
    "connections.interval": 5,
    "connections.ring-busy": 4,
    closes: 2,
    folded: 1,
  });
});

Deno.test("flow records of one program in one workload merge: counts add up, the busiest process names it", () => {
  const stage = new FlowStage((pid) => (pid === 9 ? "" : "/usr/bin/wget"));
  const out: RawConnect[] = [];
  stage.connect((r) => out.push(r as RawConnect), { log: () => {}, stop: () => {}, flushSoon: () => {} });
  stage.inject([
    decode({ pid: 1, connections: 1, statuses: { established: 1 }, closes: 1, sent: 10, comm: "wget" }),
    decode({ pid: 2, connections: 3, statuses: { established: 2, refused: 1 }, closes: 2, sent: 20, comm: "wget2" }),
    decode({ pid: 3, connections: 1, statuses: { established: 1 }, port: 80 }), // another port: its own
    decode({ pid: 9, connections: 1 }), // unknown to the process cache: its own
  ]);
  assert.equal(out.length, 3);
  const merged = out.find((r) => r.dport === 443 && r.pid !== 9)!;
  assert.deepEqual([merged.pid, merged.comm, merged.flow!.processes], [2, "wget2", 2]);
  assert.deepEqual([merged.flow!.connections, merged.flow!.closes, merged.bytesSent], [4, 3, 30]);
  assert.deepEqual(merged.flow!.statuses, [["established", 3], ["refused", 1]]);
  assert.equal(stage.counters()["connections.interval"], 6);
});

Deno.test("a flow record enriched: its times on the wall clock, a folded one named by its user, no process", async () => {
  const passwd = await Deno.makeTempFile();
  await Deno.writeTextFile(passwd, "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
  try {
    const deps = {
      clock: { wallNs: (ns: bigint) => ns + 1_000_000_000n },
      users: new UserNames(passwd),
      processes: new ProcessCache({ proc: { startNs: () => undefined, read: () => undefined } as never }),
      containers: { get: () => undefined },
    };
    const raw = decode({ flags: FLOW_FOLDED, pid: 0, addr: [], port: 0, connections: 9, comm: "" });
    raw.uid = 1000;
    const folded = enrich(raw, deps);
    assert.deepEqual([folded.event, folded.user, folded.pid, folded.exe], ["flow", "alice", 0, ""]);
    assert.deepEqual([folded.flow!.firstSeen, folded.flow!.intervalEnd], [1_000_001_000n, 1_000_003_000n]);
    // An inbound connection closed before its accept has no task: no user either, whatever uid 0 says.
    const unaccepted = enrich(decode({ flags: FLOW_INBOUND, pid: 0, closes: 1 }), deps);
    assert.deepEqual([unaccepted.user, unaccepted.pid, unaccepted.latencyUs], ["", 0, 0]);
  } finally {
    await Deno.remove(passwd);
  }
});

Deno.test("a table is read only after the programs were turned from it and every running one has finished", async () => {
  const calls: string[] = [];
  let release = () => {};
  const object = {
    updateElem: (name: string, _k: Uint8Array, v: Uint8Array) => calls.push(`${name}=${new Uint32Array(v.buffer)[0]}`),
    waitForPrograms: (outer: string, inner: string) => {
      calls.push(`wait ${outer}<-${inner}`);
      return new Promise<void>((r) => release = r);
    },
    drainMap: (name: string) => {
      calls.push(`drain ${name}`);
      return 0;
    },
  } as unknown as BpfObject;
  const tables = new FlowTables(object, () => 1n);
  const first = tables.collect();
  await Promise.resolve();
  // Until the kernel says no program runs any more, the table is left alone.
  assert.deepEqual(calls, ["lm_flow_gen=1", "wait lm_sync<-lm_sync_inner"]);
  release();
  await first;
  const second = tables.collect();
  release();
  await second;
  assert.deepEqual(calls, [
    "lm_flow_gen=1",
    "wait lm_sync<-lm_sync_inner",
    "drain lm_flows_0",
    "drain lm_flows_share_0",
    "lm_flow_gen=0",
    "wait lm_sync<-lm_sync_inner",
    "drain lm_flows_1",
    "drain lm_flows_share_1",
  ]);
});
