/**
 * Raw ring-buffer records to typed values. No enrichment happens here.
 * @module
 */
import ipaddr from "ipaddr.js";
import { type CgroupCache, noCgroups } from "./cgroups.ts";
import type { RawFlow } from "./flows.ts";
import { type Counters, Stage } from "../stage.ts";
import type { RingRecord } from "../../ffi/ring_consumer.ts";
import type { ClosedBy, EventKind, Status } from "../event.ts";
import {
  CLOSED_BY,
  CONN,
  CONN_SIZE,
  CWD_COMPLETE,
  CWD_NAME,
  DNS,
  DNS_QUERY,
  DNS_QUERY_SIZE,
  DNS_SIZE,
  EXEC,
  EXEC_SIZE,
  EXIT,
  EXIT_SIZE,
  FLAG_EXISTING,
  FLAG_FIN_ACKED,
  FLAG_FIN_RECEIVED,
  FLAG_INBOUND,
  FORK,
  FORK_SIZE,
  KIND,
  STATUS_NAMES,
} from "./layout.ts";

/** A connect, accept or close record as the kernel reported it. */
export interface RawConnect {
  kind: "connect";
  event: EventKind;
  /**
   * 0 when connections are not tracked. A number: the kernel's id is a CPU's
   * sequence number shifted by 12 bits, exact below a CPU's 2^41st connection;
   * past that, the record goes untracked (connIdAt).
   */
  connId: number;
  /** Accepted here (accept and close records). */
  inbound: boolean;
  /** Close records: the connection was found by the start-up snapshot. */
  existing: boolean;
  /**
   * Close records: the kernel's counters of sequence space acknowledged (sent) and
   * received, less what the flags say they hold beyond payload: FINs, and the SYN of
   * a connection opened here (for an `existing` one the kernel does not know who
   * opened it: ConnJoin takes the SYN off); retransmitted segments; smoothed RTT.
   */
  bytesSent: number;
  bytesReceived: number;
  retransmits: number;
  srttUs: number;
  closedBy: ClosedBy | "";
  /** Close records: the kernel's word for its opening record's latency (connect's handshake, accept's wait), µs. */
  latencyUs: number;
  /** CLOCK_BOOTTIME ns when the record was emitted. */
  tsNs: bigint;
  /** CLOCK_BOOTTIME ns at connect(2). */
  startNs: bigint;
  cgroupId: bigint;
  /** The process start time (CLOCK_BOOTTIME ns): with pid, the process identity. */
  procStartNs: bigint;
  pid: number;
  tid: number;
  ppid: number;
  uid: number;
  gid: number;
  mntns: number;
  netns: number;
  skErr: number;
  sport: number;
  dport: number;
  /** 4 or 6; a v4-mapped IPv6 socket is reported as 4. */
  family: 4 | 6;
  status: Status;
  saddr: string;
  daddr: string;
  comm: string;
  cgroup: string;
  cgroupParent: string;
  /** The socket's network namespace, as the DNS capture names it (0n when the kernel cannot say). */
  netnsCookie: bigint;
  /** A DNS response as an event (`--events dns`, made by the DNS stage). */
  dns?: { query: string; qtype: string; rcode: string; answers: string[] };
  /** A flow record's counts (event `flow`, made from the kernel's flow tables). */
  flow?: RawFlow;
}

/** A DNS response that arrived at a socket. */
export interface RawDns {
  kind: "dns";
  tsNs: bigint;
  netnsCookie: bigint;
  cgroupId: bigint;
  family: 4 | 6;
  /** 17 (UDP) or 6 (TCP: the data starts with a two-byte length). */
  proto: number;
  /** The resolver's address, and the asking socket's. */
  saddr: string;
  daddr: string;
  dport: number;
  /** The response's bytes as copied (at most 1024), and its size in the packet. */
  data: Uint8Array;
  payloadLen: number;
}

/** A DNS query leaving a socket, in the asking task. */
export interface RawDnsQuery {
  kind: "dns_query";
  tsNs: bigint;
  pid: number;
  tid: number;
  uid: number;
  netnsCookie: bigint;
  cgroupId: bigint;
  procStartNs: bigint;
  /** The asking socket's port, and the query's id: with the netns, they match the response. */
  sport: number;
  dnsId: number;
  family: 4 | 6;
  /** The resolver asked. */
  daddr: string;
  /** The message from its header, at most 511 bytes: enough for the question. */
  data: Uint8Array;
  comm: string;
  cgroup: string;
  cgroupParent: string;
}

/** A successful execve. */
export interface RawExec {
  kind: "exec";
  tsNs: bigint;
  procStartNs: bigint;
  pid: number;
  ppid: number;
  uid: number;
  gid: number;
  mntns: number;
  comm: string;
  /** The path as given to execve (may be relative). */
  filename: string;
  /** For a relative filename, the working directory read in the kernel, if complete. */
  cwd?: string;
  args: string[];
  /** argv did not fit the record. */
  argsTruncated: boolean;
}

/** A process exited. */
export interface RawExit {
  kind: "exit";
  tsNs: bigint;
  procStartNs: bigint;
  pid: number;
}

/** A new process, running its parent's program until it execs. */
export interface RawFork {
  kind: "fork";
  tsNs: bigint;
  procStartNs: bigint;
  pid: number;
  ppid: number;
  parentStartNs: bigint;
}

/** Any record. */
export type RawRecord = RawConnect | RawExec | RawExit | RawFork | RawDns | RawDnsQuery;

const utf8 = new TextDecoder();

/**
 * A NUL-terminated string. Short ASCII ones (comm) are cheapest built in a loop;
 * longer ones (cgroup names of ~80 bytes) are 4x cheaper through TextDecoder.
 */
/** A NUL-terminated string of at most `max` bytes at `offset`. */
export function cString(v: DataView, offset: number, max: number): string {
  if (v.getUint8(offset) === 0) return ""; // e.g. no cgroup name on the host: no allocation
  if (max > 16) {
    const bytes = new Uint8Array(v.buffer, v.byteOffset + offset, max);
    const end = bytes.indexOf(0);
    return utf8.decode(bytes.subarray(0, end < 0 ? max : end));
  }
  let s = "";
  for (let i = 0; i < max; i++) {
    const b = v.getUint8(offset + i);
    if (b === 0) break;
    if (b >= 0x80) {
      const bytes = new Uint8Array(v.buffer, v.byteOffset + offset, max);
      const end = bytes.indexOf(0);
      return utf8.decode(bytes.subarray(0, end < 0 ? max : end));
    }
    s += String.fromCharCode(b);
  }
  return s;
}

/**
 * The string a kernel string field held last time, and its bytes: a burst of
 * events from one process repeats its comm, which
 * are then compared, not decoded again (no allocation per event).
 */
class LastString {
  #bytes = new Uint8Array(256);
  #len = -1;
  #value = "";

  get(v: DataView, offset: number, max: number): string {
    let n = 0;
    let same = true;
    for (; n < max; n++) {
      const b = v.getUint8(offset + n);
      if (b === 0) break;
      if (same && (n >= this.#len || this.#bytes[n] !== b)) same = false;
    }
    if (same && n === this.#len) return this.#value;
    this.#value = cString(v, offset, max);
    this.#len = n;
    this.#bytes.set(new Uint8Array(v.buffer, v.byteOffset + offset, n));
    return this.#value;
  }
}

const lastComm = new LastString();

/**
 * The u64 a kernel field held last time, as the bigint made for it then: a burst of
 * records from one process repeats its start time, cgroup id and network namespace,
 * which then cost a compare of two words, not a bigint each.
 */
class LastU64 {
  #lo = 0;
  #hi = 0;
  #value = 0n;

  get(v: DataView, offset: number): bigint {
    const lo = v.getUint32(offset, true);
    const hi = v.getUint32(offset + 4, true);
    if (lo !== this.#lo || hi !== this.#hi) {
      this.#lo = lo;
      this.#hi = hi;
      this.#value = v.getBigUint64(offset, true);
    }
    return this.#value;
  }
}

const lastCgroupId = new LastU64();
const lastProcStart = new LastU64();
const lastNetnsCookie = new LastU64();

/** IPv4 addresses as text, by their 32-bit value; bounded. */
const V4_TEXT = new Map<number, string>();
const MAX_V4_TEXT = 4096;

/** Format 16 address bytes at `offset`; IPv4 uses the first 4. */
export function address(v: DataView, offset: number, family: 4 | 6, mapped: boolean): string {
  if (family === 4) {
    const at = offset + (mapped ? 12 : 0);
    const key = v.getUint32(at, false);
    let text = V4_TEXT.get(key);
    if (text === undefined) {
      text = `${key >>> 24}.${(key >>> 16) & 255}.${(key >>> 8) & 255}.${key & 255}`;
      if (V4_TEXT.size >= MAX_V4_TEXT) V4_TEXT.clear();
      V4_TEXT.set(key, text);
    }
    return text;
  }
  return ipaddr.fromByteArray(Array.from(new Uint8Array(v.buffer, v.byteOffset + offset, 16))).toString();
}

/** Whether 16 address bytes at `offset` are an IPv4-mapped IPv6 address. */
export function isV4Mapped(v: DataView, offset: number): boolean {
  return v.getUint32(offset, true) === 0 && v.getUint32(offset + 4, true) === 0 &&
    v.getUint16(offset + 8, true) === 0 && v.getUint16(offset + 10, true) === 0xffff;
}

const AF_INET6 = 10;

/** Acknowledged sequence space that is not payload: our FIN, and the SYN of a connect made here. */
function sequenceOnly(flags: number): number {
  const syn = flags & (FLAG_INBOUND | FLAG_EXISTING) ? 0 : 1;
  return syn + (flags & FLAG_FIN_ACKED ? 1 : 0);
}

/** A little-endian u64 counter as a number (exact below 2^53). */
function u64(v: DataView, offset: number): number {
  return v.getUint32(offset, true) + v.getUint32(offset + 4, true) * 0x1_0000_0000;
}

/** A connection record's peer address, as decodeConnect says it. */
export function peerAddress(v: DataView, b = 0): string {
  const af = v.getUint16(b + CONN.family.offset, true);
  const mapped = af === AF_INET6 && isV4Mapped(v, b + CONN.daddr.offset);
  return address(v, b + CONN.daddr.offset, af === AF_INET6 && !mapped ? 6 : 4, mapped);
}

/** Connection ids past 2^53 (a CPU's 2^41st connection), decoded as 0: untracked, their closes unjoined. */
export const inexactIds = { count: 0 };

/**
 * A record's connection id as a number: from its two halves (no bigint), exact
 * below 2^53. One past that could not be told from its neighbours as a number,
 * so it goes untracked (0): its close keeps the kernel's task, joined to nothing.
 */
export function connIdAt(v: DataView, offset: number): number {
  const hi = v.getUint32(offset + 4, true);
  if (hi < 0x20_0000) return hi * 0x1_0000_0000 + v.getUint32(offset, true);
  inexactIds.count++;
  return 0;
}

/**
 * A connection record with every field at its empty value (all of them, in order: one
 * shape), for a decode to fill in, or a record made another way to start from.
 */
export function blankConnect(): RawConnect {
  return {
    kind: "connect",
    event: "connect",
    connId: 0,
    inbound: false,
    existing: false,
    bytesSent: 0,
    bytesReceived: 0,
    retransmits: 0,
    srttUs: 0,
    closedBy: "",
    latencyUs: 0,
    tsNs: 0n,
    startNs: 0n,
    cgroupId: 0n,
    procStartNs: 0n,
    pid: 0,
    tid: 0,
    ppid: 0,
    uid: 0,
    gid: 0,
    mntns: 0,
    netns: 0,
    skErr: 0,
    sport: 0,
    dport: 0,
    family: 4,
    status: "unknown",
    saddr: "",
    daddr: "",
    comm: "",
    cgroup: "",
    cgroupParent: "",
    netnsCookie: 0n,
    dns: undefined,
    flow: undefined,
  };
}

/** Decode a connection record into `r`, every field (a reused record keeps nothing of the last one). */
function decodeConnect(v: DataView, b: number, event: EventKind, cgroups: CgroupCache, r: RawConnect): RawConnect {
  const af = v.getUint16(b + CONN.family.offset, true);
  const mapped = af === AF_INET6 && isV4Mapped(v, b + CONN.daddr.offset);
  const family: 4 | 6 = af === AF_INET6 && !mapped ? 6 : 4;
  const flags = v.getUint8(b + CONN.flags.offset);
  const close = event === "close";
  const cg = cgroups.get(v, b + CONN.cgroup_key.offset, b + CONN.cgroup_hierarchy.offset);
  r.event = event;
  r.connId = connIdAt(v, b + CONN.conn_id.offset);
  r.inbound = (flags & FLAG_INBOUND) !== 0;
  r.existing = (flags & FLAG_EXISTING) !== 0;
  // u64 counters as numbers, from their two halves (no bigint): exact up to 8 PiB.
  r.bytesSent = close ? u64(v, b + CONN.bytes_sent.offset) - sequenceOnly(flags) : 0;
  r.bytesReceived = close ? u64(v, b + CONN.bytes_received.offset) - (flags & FLAG_FIN_RECEIVED ? 1 : 0) : 0;
  r.retransmits = close ? v.getUint32(b + CONN.retransmits.offset, true) : 0;
  r.srttUs = close ? v.getUint32(b + CONN.srtt_us.offset, true) : 0;
  r.closedBy = close ? CLOSED_BY[v.getUint8(b + CONN.closed_by.offset)] ?? "" : "";
  r.latencyUs = close ? v.getUint32(b + CONN.latency_us.offset, true) : 0;
  r.tsNs = v.getBigUint64(b + CONN.ts_ns.offset, true);
  r.startNs = v.getBigUint64(b + CONN.start_ns.offset, true);
  r.cgroupId = lastCgroupId.get(v, b + CONN.cgroup_id.offset);
  r.procStartNs = lastProcStart.get(v, b + CONN.proc_start_ns.offset);
  r.pid = v.getUint32(b + CONN.pid.offset, true);
  r.tid = v.getUint32(b + CONN.tid.offset, true);
  r.ppid = v.getUint32(b + CONN.ppid.offset, true);
  r.uid = v.getUint32(b + CONN.uid.offset, true);
  r.gid = v.getUint32(b + CONN.gid.offset, true);
  r.mntns = v.getUint32(b + CONN.mntns.offset, true);
  r.netns = v.getUint32(b + CONN.netns.offset, true);
  r.skErr = v.getInt32(b + CONN.sk_err.offset, true);
  r.sport = v.getUint16(b + CONN.sport.offset, true);
  r.dport = v.getUint16(b + CONN.dport.offset, true);
  r.family = family;
  r.status = STATUS_NAMES[v.getUint8(b + CONN.status.offset)] ?? "unknown";
  // A v4-mapped source is mapped too when the destination is.
  r.saddr = address(v, b + CONN.saddr.offset, family, mapped && isV4Mapped(v, b + CONN.saddr.offset));
  r.daddr = address(v, b + CONN.daddr.offset, family, mapped);
  r.comm = lastComm.get(v, b + CONN.comm.offset, CONN.comm.size);
  r.cgroup = cg.cgroup;
  r.cgroupParent = cg.cgroupParent;
  r.netnsCookie = lastNetnsCookie.get(v, b + CONN.netns_cookie.offset);
  r.dns = undefined;
  r.flow = undefined;
  return r;
}

function decodeDnsQuery(v: DataView, b: number): RawDnsQuery {
  const family: 4 | 6 = v.getUint16(b + DNS_QUERY.family.offset, true) === AF_INET6 ? 6 : 4;
  const len = Math.min(v.getUint16(b + DNS_QUERY.len.offset, true), DNS_QUERY.data.size);
  return {
    kind: "dns_query",
    tsNs: v.getBigUint64(b + DNS_QUERY.ts_ns.offset, true),
    pid: v.getUint32(b + DNS_QUERY.pid.offset, true),
    tid: v.getUint32(b + DNS_QUERY.tid.offset, true),
    uid: v.getUint32(b + DNS_QUERY.uid.offset, true),
    netnsCookie: v.getBigUint64(b + DNS_QUERY.netns_cookie.offset, true),
    cgroupId: v.getBigUint64(b + DNS_QUERY.cgroup_id.offset, true),
    procStartNs: v.getBigUint64(b + DNS_QUERY.proc_start_ns.offset, true),
    sport: v.getUint16(b + DNS_QUERY.sport.offset, true),
    dnsId: v.getUint16(b + DNS_QUERY.dns_id.offset, true),
    family,
    daddr: address(v, b + DNS_QUERY.daddr.offset, family, false),
    // Copied out: the record's bytes are the ring's, given back after the batch.
    data: new Uint8Array(v.buffer, v.byteOffset + b + DNS_QUERY.data.offset, len).slice(),
    comm: cString(v, b + DNS_QUERY.comm.offset, DNS_QUERY.comm.size),
    cgroup: cString(v, b + DNS_QUERY.cgroup.offset, DNS_QUERY.cgroup.size),
    cgroupParent: cString(v, b + DNS_QUERY.cgroup_parent.offset, DNS_QUERY.cgroup_parent.size),
  };
}

function decodeDns(v: DataView, b: number): RawDns {
  const family: 4 | 6 = v.getUint16(b + DNS.family.offset, true) === AF_INET6 ? 6 : 4;
  const len = Math.min(v.getUint32(b + DNS.len.offset, true), DNS.data.size);
  return {
    kind: "dns",
    tsNs: v.getBigUint64(b + DNS.ts_ns.offset, true),
    netnsCookie: v.getBigUint64(b + DNS.netns_cookie.offset, true),
    cgroupId: v.getBigUint64(b + DNS.cgroup_id.offset, true),
    family,
    proto: v.getUint8(b + DNS.proto.offset),
    saddr: address(v, b + DNS.saddr.offset, family, false),
    daddr: address(v, b + DNS.daddr.offset, family, false),
    dport: v.getUint16(b + DNS.dport.offset, true),
    // A copy: the record's bytes are the ring's, valid only during this call.
    data: new Uint8Array(v.buffer, v.byteOffset + b + DNS.data.offset, len).slice(),
    payloadLen: v.getUint32(b + DNS.payload_len.offset, true),
  };
}

function decodeExec(v: DataView, b: number): RawExec {
  const argsLen = Math.min(v.getUint32(b + EXEC.args_len.offset, true), EXEC.args.size);
  const raw = new Uint8Array(v.buffer, v.byteOffset + b + EXEC.args.offset, argsLen);
  const parts = utf8.decode(raw).split("\0");
  // argv ends with a NUL; a missing final NUL means the record cut it short.
  const truncated = argsLen === EXEC.args.size && raw[argsLen - 1] !== 0;
  if (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  // The working directory's names, leaf first, one per slot; complete walks only.
  let cwd: string | undefined;
  if (v.getUint32(b + EXEC.cwd_flags.offset, true) & CWD_COMPLETE) {
    const n = Math.min(v.getUint32(b + EXEC.cwd_len.offset, true), EXEC.cwd.size / CWD_NAME);
    const names: string[] = [];
    for (let i = n - 1; i >= 0; i--) names.push(cString(v, b + EXEC.cwd.offset + i * CWD_NAME, CWD_NAME));
    cwd = "/" + names.filter((x) => x !== "" && x !== "/").join("/");
  }
  return {
    kind: "exec",
    tsNs: v.getBigUint64(b + EXEC.ts_ns.offset, true),
    procStartNs: v.getBigUint64(b + EXEC.proc_start_ns.offset, true),
    pid: v.getUint32(b + EXEC.pid.offset, true),
    ppid: v.getUint32(b + EXEC.ppid.offset, true),
    uid: v.getUint32(b + EXEC.uid.offset, true),
    gid: v.getUint32(b + EXEC.gid.offset, true),
    mntns: v.getUint32(b + EXEC.mntns.offset, true),
    comm: cString(v, b + EXEC.comm.offset, EXEC.comm.size),
    filename: cString(v, b + EXEC.filename.offset, EXEC.filename.size),
    cwd,
    args: parts,
    argsTruncated: truncated,
  };
}

function decodeExit(v: DataView, b: number): RawExit {
  return {
    kind: "exit",
    tsNs: v.getBigUint64(b + EXIT.ts_ns.offset, true),
    procStartNs: v.getBigUint64(b + EXIT.proc_start_ns.offset, true),
    pid: v.getUint32(b + EXIT.pid.offset, true),
  };
}

function decodeFork(v: DataView, b: number): RawFork {
  return {
    kind: "fork",
    tsNs: v.getBigUint64(b + FORK.ts_ns.offset, true),
    procStartNs: v.getBigUint64(b + FORK.proc_start_ns.offset, true),
    pid: v.getUint32(b + FORK.pid.offset, true),
    ppid: v.getUint32(b + FORK.ppid.offset, true),
    parentStartNs: v.getBigUint64(b + FORK.parent_start_ns.offset, true),
  };
}

/** Records decoded without a capture: no cgroup key is known. */
const NO_CGROUPS = noCgroups();

/**
 * Decode one record; undefined for a kind this version does not know. A connection
 * record's cgroup names come from `cgroups`, by the key it carries. Given `into`, a
 * connection record is decoded into it (every field), not into a new object.
 */
export function decodeRecord(
  v: DataView,
  cgroups: CgroupCache = NO_CGROUPS,
  b = 0,
  into?: RawConnect,
): RawRecord | undefined {
  switch (v.getUint32(b + CONN.kind.offset, true)) {
    case KIND.connect:
      return decodeConnect(v, b, "connect", cgroups, into ?? blankConnect());
    case KIND.accept:
      return decodeConnect(v, b, "accept", cgroups, into ?? blankConnect());
    case KIND.close:
      return decodeConnect(v, b, "close", cgroups, into ?? blankConnect());
    case KIND.dns:
      return decodeDns(v, b);
    case KIND.dnsQuery:
      return decodeDnsQuery(v, b);
    case KIND.exec:
      return decodeExec(v, b);
    case KIND.exit:
      return decodeExit(v, b);
    case KIND.fork:
      return decodeFork(v, b);
    default:
      return undefined;
  }
}

/** Each kind's record size, by kind number: the kernel's records are all of fixed size. */
const SIZE_OF_KIND: readonly number[] = (() => {
  const sizes: number[] = [];
  sizes[KIND.connect] = sizes[KIND.accept] = sizes[KIND.close] = CONN_SIZE;
  sizes[KIND.exec] = EXEC_SIZE;
  sizes[KIND.exit] = EXIT_SIZE;
  sizes[KIND.fork] = FORK_SIZE;
  sizes[KIND.dns] = DNS_SIZE;
  sizes[KIND.dnsQuery] = DNS_QUERY_SIZE;
  return sizes;
})();

/**
 * The pipeline's source stage: ring records in, typed records out. Records the
 * capture produced some other way (the start-up snapshot) enter with `inject`.
 * A connection record from the ring is one reused object, as the ring's record is:
 * valid only during the push, so a stage before enrich that keeps one must copy it.
 */
export class DecodeStage extends Stage<RingRecord, RawRecord> {
  readonly name = "decode";
  override readonly notable: ReadonlySet<string> = new Set([
    "unknownKind",
    "shortRecord",
    "cgroupUnknown",
    "idsPastExact",
  ]);
  #records = 0;
  #unknown = 0;
  #short = 0;
  #take: ((v: DataView, offset: number) => boolean) | undefined;
  #taken = 0;
  #cgroups: CgroupCache;
  /**
   * The one object every connection record from the ring is decoded into: the stages
   * behind take what they keep from it (enrich makes the event) before push returns,
   * and none holds on to it, so a record costs no object of its own here.
   */
  #scratch = blankConnect();

  /**
   * @param takeConnect given every connect record first; one it takes (true) goes no
   *   further, undecoded, and counts as filtered (NameOnlyConnects: nobody asked for it)
   * @param cgroups the capture's cgroup names, by the keys records carry
   */
  constructor(takeConnect?: (v: DataView, offset: number) => boolean, cgroups: CgroupCache = noCgroups()) {
    super();
    this.#take = takeConnect;
    this.#cgroups = cgroups;
  }

  push(rec: RingRecord): void {
    this.#records++;
    const v = rec.view;
    const b = rec.offset;
    // The view is the whole ring: a record shorter than its kind would be read into the next one's bytes.
    const kind = rec.length >= CONN.kind.offset + 4 ? v.getUint32(b + CONN.kind.offset, true) : 0;
    if (rec.length < (SIZE_OF_KIND[kind] ?? Infinity)) {
      if (SIZE_OF_KIND[kind] === undefined) this.#unknown++;
      else this.#short++;
      return;
    }
    if (this.#take && kind === KIND.connect && this.#take(v, b)) {
      this.#taken++;
      return;
    }
    const r = decodeRecord(v, this.#cgroups, b, this.#scratch);
    if (r) this.emit(r);
    else this.#unknown++;
  }

  /** Pass records that are already decoded. */
  inject(records: readonly RawRecord[]): void {
    for (const r of records) this.emit(r);
  }

  override counters(): Counters {
    const c: Counters = {
      records: this.#records,
      unknownKind: this.#unknown,
      // Records shorter than their kind's layout (none from a kernel that runs this build's object).
      shortRecord: this.#short,
      // Keys the kernel's cgroup table had forgotten before their first record was read: no names.
      cgroupUnknown: this.#cgroups.unknown,
      cgroupReads: this.#cgroups.reads,
      // Connection ids past 2^53, taken as untracked (this process's, all stages': decodeRecord is shared).
      idsPastExact: inexactIds.count,
    };
    // The ledger's: taken connects are events seen and filtered here.
    if (this.#take) Object.assign(c, { seen: this.#taken, filtered: this.#taken });
    return c;
  }
}
