/**
 * Flows counted in the kernel (lm_flows_0 and lm_flows_1): read once an interval
 * and turned into flow records, which the pipeline enriches, filters and renders
 * as it does connection records.
 *
 * The programs count into the table lm_flow_gen names. To read one, user space
 * turns lm_flow_gen to the other table, waits until every program that may have
 * read the old turn has finished (an update of lm_sync, which the kernel returns
 * from only after an RCU grace period: see BpfObject.waitForPrograms), then reads
 * and empties it with batch operations, and its owners' shares with it. Nothing a
 * program counts is read twice, or lost between two reads, however long a program
 * was held off its CPU between finding its entry and adding to it.
 * @module
 */
import type { BpfObject } from "../../ffi/libbpf.ts";
import { type FlowCause, type Status, STATUSES } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
import type { CgroupCache } from "./cgroups.ts";
import { address, cString, isV4Mapped, type RawConnect, type RawRecord } from "./decode.ts";
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

/** A flow record's counts for one interval, as the kernel kept them (times CLOCK_BOOTTIME ns). */
export interface RawFlow {
  /** Attempts opened in the interval: connects (at their outcome, or pending), accepts. */
  connections: number;
  /** Records by status: each outcome, each pending, each accept (`established`); nonzero ones, most first. */
  statuses: readonly (readonly [Status, number])[];
  closes: number;
  firstNs: bigint;
  lastNs: bigint;
  /** The interval: from the previous read (or the start) to this one. */
  intervalStartNs: bigint;
  intervalEndNs: bigint;
  /** The longest closed connection, ns. */
  longestNs: bigint;
  cause: FlowCause;
  /** The owner's share of the table was used up: every remote end of theirs, counted in one. */
  folded: boolean;
  /** Processes whose connections it counts (records of one program in one workload merge). */
  processes: number;
}

const STATUS_COUNT = FLOW_STATS.statuses.size / 8;
const AF_INET6 = 10;
const NO_NAMES = { cgroup: "", cgroupParent: "" };

/** Which local ports were listened on at the start (the snapshot): tells an existing connection's direction. */
export type Listened = (port: number) => boolean;

/** One entry of a flow table as a flow record (event `flow`). */
export function decodeFlow(
  key: DataView,
  stats: DataView,
  interval: { startNs: bigint; endNs: bigint },
  cgroups?: CgroupCache,
  listened: Listened = () => false,
): RawConnect {
  const flags = key.getUint8(FLOW_KEY.flags.offset);
  const folded = (flags & FLOW_FOLDED) !== 0;
  const existing = (flags & FLOW_EXISTING) !== 0;
  const lport = key.getUint16(FLOW_KEY.lport.offset, true);
  const port = key.getUint16(FLOW_KEY.port.offset, true);
  // The kernel does not know who opened a connection that was open before it started.
  const inbound = (flags & FLOW_INBOUND) !== 0 || (existing && listened(lport));
  const af = key.getUint16(FLOW_KEY.family.offset, true);
  const mapped = af === AF_INET6 && isV4Mapped(key, FLOW_KEY.addr.offset);
  const family: 4 | 6 = af === AF_INET6 && !mapped ? 6 : 4;
  const statuses: [Status, number][] = [];
  for (let i = 0; i < STATUS_COUNT; i++) {
    const n = Number(stats.getBigUint64(FLOW_STATS.statuses.offset + 8 * i, true));
    if (n > 0) statuses.push([STATUSES[i] ?? "unknown", n]);
  }
  statuses.sort((a, b) => b[1] - a[1]);
  const closes = Number(stats.getBigUint64(FLOW_STATS.closes.offset, true));
  let bytesSent = Number(stats.getBigUint64(FLOW_STATS.bytes_sent.offset, true));
  // An existing connection's count of sequence space sent starts with its SYN if it was opened here.
  if (existing && !inbound) bytesSent = Math.max(0, bytesSent - closes);
  const firstNs = stats.getBigUint64(FLOW_STATS.first_ns.offset, true);
  const lastNs = stats.getBigUint64(FLOW_STATS.last_ns.offset, true);
  const cg = folded || !cgroups
    ? NO_NAMES
    : cgroups.get(key, FLOW_KEY.cgroup_key.offset, FLOW_KEY.cgroup_hierarchy.offset);
  return {
    kind: "connect",
    event: "flow",
    connId: 0,
    inbound,
    existing,
    bytesSent,
    bytesReceived: Number(stats.getBigUint64(FLOW_STATS.bytes_received.offset, true)),
    retransmits: 0,
    srttUs: 0,
    closedBy: "",
    latencyUs: 0,
    tsNs: interval.endNs,
    startNs: firstNs,
    cgroupId: key.getBigUint64(FLOW_KEY.cgroup_id.offset, true),
    procStartNs: key.getBigUint64(FLOW_KEY.proc_start_ns.offset, true),
    pid: key.getUint32(FLOW_KEY.pid.offset, true),
    tid: 0,
    ppid: stats.getUint32(FLOW_STATS.ppid.offset, true),
    uid: key.getUint32(FLOW_KEY.uid.offset, true),
    gid: stats.getUint32(FLOW_STATS.gid.offset, true),
    mntns: stats.getUint32(FLOW_STATS.mntns.offset, true),
    netns: key.getUint32(FLOW_KEY.netns.offset, true),
    skErr: 0,
    // The flow's port: the peer's for an outbound one, this host's for an inbound one.
    sport: inbound ? (existing ? lport : port) : 0,
    dport: inbound ? 0 : port,
    family,
    status: statuses[0]?.[0] ?? (closes > 0 ? "closed" : "unknown"),
    saddr: "",
    daddr: folded ? "" : address(key, FLOW_KEY.addr.offset, family, mapped),
    comm: folded ? "" : cString(stats, FLOW_STATS.comm.offset, FLOW_STATS.comm.size),
    cgroup: cg.cgroup,
    cgroupParent: cg.cgroupParent,
    netnsCookie: key.getBigUint64(FLOW_KEY.netns_cookie.offset, true),
    flow: {
      connections: Number(stats.getBigUint64(FLOW_STATS.connections.offset, true)),
      statuses,
      closes,
      firstNs,
      lastNs,
      intervalStartNs: interval.startNs,
      intervalEndNs: interval.endNs,
      longestNs: stats.getBigUint64(FLOW_STATS.longest_ns.offset, true),
      cause: flags & FLOW_OVERFLOW ? "ring-busy" : "interval",
      folded,
      processes: 1,
    },
  };
}

/** The kernel's two flow tables, read in turn. */
export class FlowTables {
  #object: BpfObject;
  #gen = 0;
  #sinceNs: bigint;
  #now: () => bigint;
  #cgroups?: CgroupCache;
  #listened: Listened;

  /**
   * @param now CLOCK_BOOTTIME ns, the kernel's clock
   * @param listened local ports listened on at the start, for the direction of connections open then
   */
  constructor(object: BpfObject, now: () => bigint, cgroups?: CgroupCache, listened: Listened = () => false) {
    this.#object = object;
    this.#now = now;
    this.#sinceNs = now();
    this.#cgroups = cgroups;
    this.#listened = listened;
  }

  /** Turn the programs to the other table, wait until none still counts into this one, then read it. */
  async collect(): Promise<RawConnect[]> {
    const old = this.#gen;
    this.#gen ^= 1;
    this.#object.updateElem("lm_flow_gen", new Uint8Array(4), new Uint8Array(new Uint32Array([this.#gen]).buffer));
    const endNs = this.#now();
    await this.#object.waitForPrograms("lm_sync", "lm_sync_inner");
    return this.#read([old], endNs);
  }

  /** Read both tables at once: once the programs are detached, at the end of the run. */
  collectAll(): RawConnect[] {
    return this.#read([this.#gen ^ 1, this.#gen], this.#now());
  }

  #read(tables: number[], endNs: bigint): RawConnect[] {
    const interval = { startNs: this.#sinceNs, endNs };
    this.#sinceNs = endNs;
    const out: RawConnect[] = [];
    for (const t of tables) {
      this.#object.drainMap(`lm_flows_${t}`, FLOW_KEY_SIZE, FLOW_STATS_SIZE, (keys, values, n) => {
        for (let i = 0; i < n; i++) {
          // Copied out: the batch buffers are reused.
          const k = new DataView(keys.slice(i * FLOW_KEY_SIZE, (i + 1) * FLOW_KEY_SIZE).buffer);
          const v = new DataView(values.buffer, values.byteOffset + i * FLOW_STATS_SIZE, FLOW_STATS_SIZE);
          out.push(decodeFlow(k, v, interval, this.#cgroups, this.#listened));
        }
      });
      // The owners' shares go with their table: each interval starts with every share whole.
      this.#object.drainMap(`lm_flows_share_${t}`, 8, 4, () => {});
    }
    // Entries of one flow from both tables (the last read) share an interval: FlowStage merges them.
    return out;
  }
}

/** What a flow is besides its process: who (cgroup, user), where (network namespace), to whom, why it was counted. */
const flowEnd = (f: RawConnect) =>
  [
    f.cgroupId,
    f.uid,
    f.netnsCookie,
    f.netns,
    f.family,
    f.daddr,
    f.sport,
    f.dport,
    f.inbound,
    f.existing,
    f.flow!.cause,
    f.flow!.folded,
  ].join("|");

/**
 * Flow records with the same `key`, merged into one: counts added, the earliest
 * first record, the latest last one, the longest close. The busiest process names
 * the merged record (its pid, comm, args); `processes` says how many there were.
 */
export function mergeFlows(flows: readonly RawConnect[], key: (f: RawConnect) => string): RawConnect[] {
  const byKey = new Map<string, { f: RawConnect; procs: Set<string>; top: number }>();
  for (const f of flows) {
    const k = key(f);
    const proc = `${f.pid}|${f.procStartNs}`;
    const had = byKey.get(k);
    if (!had) {
      byKey.set(k, { f: { ...f, flow: { ...f.flow! } }, procs: new Set([proc]), top: f.flow!.connections });
      continue;
    }
    had.procs.add(proc);
    const into = had.f;
    const a = into.flow!, b = f.flow!;
    const statuses = new Map(a.statuses);
    for (const [s, n] of b.statuses) statuses.set(s, (statuses.get(s) ?? 0) + n);
    const list = [...statuses].sort((x, y) => y[1] - x[1]);
    if (b.connections > had.top) {
      // The busiest process names the record.
      had.top = b.connections;
      // Its startNs too: the process cache's answer is the image it had then.
      Object.assign(into, {
        pid: f.pid,
        procStartNs: f.procStartNs,
        startNs: f.startNs,
        ppid: f.ppid,
        comm: f.comm,
        gid: f.gid,
      });
    }
    into.flow = {
      ...a,
      connections: a.connections + b.connections,
      statuses: list,
      closes: a.closes + b.closes,
      firstNs: a.firstNs < b.firstNs ? a.firstNs : b.firstNs,
      lastNs: a.lastNs > b.lastNs ? a.lastNs : b.lastNs,
      longestNs: a.longestNs > b.longestNs ? a.longestNs : b.longestNs,
      processes: 0,
    };
    into.bytesSent += f.bytesSent;
    into.bytesReceived += f.bytesReceived;
    into.status = list[0]?.[0] ?? into.status;
  }
  return [...byKey.values()].map(({ f, procs }) => {
    f.flow!.processes = procs.size;
    return f;
  });
}

/** A process's program, as the process cache knows it ("" when it does not). */
export type ExeOf = (pid: number, procStartNs: bigint, atNs: bigint) => string;

/**
 * Where flow records enter the pipeline (after decode; every other record passes
 * through), and their counters: records, and the connections they stand for by
 * cause (`interval` with --flows, `ring-busy` when the ring had no room for them
 * one by one), closes, folded records.
 */
export class FlowStage extends Stage<RawRecord> {
  readonly name = "flows";
  #exeOf: ExeOf | undefined;
  override readonly notable: ReadonlySet<string> = new Set(["connections.interval", "connections.ring-busy", "folded"]);
  #records = 0;
  #connections: Record<FlowCause, number> = { interval: 0, "ring-busy": 0 };
  #closes = 0;
  #folded = 0;
  #held: RawConnect[] = [];

  push(r: RawRecord): void {
    this.emit(r);
  }

  /** Keep flows read while the run stops, for the final read to send with its own. */
  hold(flows: readonly RawConnect[]): void {
    this.#held.push(...flows);
  }

  /** The flows held, taken. */
  held(): RawConnect[] {
    const h = this.#held;
    this.#held = [];
    return h;
  }

  /**
   * @param exeOf the process cache's program of a process: records of one program in
   *   one workload (user, cgroup, network namespace), to one remote end, merge into one
   *   (short-lived processes would otherwise make a flow record each). Without it, only a
   *   process's own records of one interval merge (the same flow read from both tables).
   */
  constructor(exeOf?: ExeOf) {
    super();
    this.#exeOf = exeOf;
  }

  /** Put flow records in, as if decoded. */
  inject(read: readonly RawConnect[]): void {
    const exeOf = this.#exeOf;
    // A process the cache does not know merges only with itself.
    const program = (f: RawConnect) => exeOf?.(f.pid, f.procStartNs, f.startNs) || `${f.pid}|${f.procStartNs}`;
    const flows = mergeFlows(
      read,
      (f) => `${f.flow!.intervalEndNs}|${f.cgroup}|${f.cgroupParent}|${flowEnd(f)}|${program(f)}`,
    );
    for (const f of flows) {
      const flow = f.flow!;
      this.#records++;
      this.#connections[flow.cause] += flow.connections;
      this.#closes += flow.closes;
      if (flow.folded) this.#folded++;
      this.emit(f);
    }
  }

  override counters(): Counters {
    return {
      records: this.#records,
      "connections.interval": this.#connections.interval,
      "connections.ring-busy": this.#connections["ring-busy"],
      closes: this.#closes,
      folded: this.#folded,
    };
  }
}
