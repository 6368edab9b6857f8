/**
 * Close records with their opening's words: the kernel's close record carries the
 * connection's counters, addresses and the task that opened or accepted it (kept
 * with the connection in the kernel, so a close never loses its process however
 * many connections are open). The connection's opening record (connect, accept,
 * or the start-up snapshot's) is kept here by `connId` until its close arrives,
 * and lends the close its process, user, container, DNS name and peer as they were
 * said then (a name's answer may have expired since); a close whose opening was
 * forgotten keeps what the kernel gave it.
 * @module
 */
import { connIdAt, peerAddress } from "../capture/decode.ts";
import { CONN, STATUS_NAMES } from "../capture/layout.ts";
import type { ConnEvent } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
import type { NameSource } from "./enricher.ts";
import type { ProcessCache, ProcInfo } from "./process_cache.ts";

/** Open connections remembered at most; beyond it the oldest is forgotten, and counted. */
export const MAX_OPEN = 65536;

/**
 * How long an inbound close waits for its accept record. The kernel reports the
 * close of a connection reset while it waited in the accept queue, or while it was
 * being accepted on another CPU, before (or without) the accept.
 */
export const PARK_MS = 1000;
/** Inbound closes waiting at most; beyond it the oldest goes out unjoined. */
export const MAX_PARKED = 4096;

/**
 * What a close takes from a connect that went no further than NameOnlyConnects: the
 * words the connect would have had that the close cannot have itself (its peer's
 * name then, and the process image then, which may have gone from the process cache
 * by the close). Its latency the kernel keeps with the connection.
 */
export interface Opening {
  dnsName: string;
  proc: ProcInfo;
}

/** The fields a close record takes from its opening record. */
type Lent = Pick<
  ConnEvent,
  | "pid"
  | "tid"
  | "ppid"
  | "uid"
  | "gid"
  | "user"
  | "comm"
  | "exe"
  | "args"
  | "procSource"
  | "latencyUs"
  | "container"
  | "containerId"
  | "containerRuntime"
  | "image"
  | "pod"
  | "namespace"
  | "cgroupId"
  | "mntns"
  | "direction"
  | "dnsName"
  | "peer"
>;

/**
 * What the join keeps of an opening record until its close: the fields it lends,
 * not the whole event (less than half its size; with --events all two of every
 * four records wait here, and what waits across a collection is promoted).
 */
function kept(e: ConnEvent): Lent {
  return {
    pid: e.pid,
    tid: e.tid,
    ppid: e.ppid,
    uid: e.uid,
    gid: e.gid,
    user: e.user,
    comm: e.comm,
    exe: e.exe,
    args: e.args,
    procSource: e.procSource,
    latencyUs: e.latencyUs,
    container: e.container,
    containerId: e.containerId,
    containerRuntime: e.containerRuntime,
    image: e.image,
    pod: e.pod,
    namespace: e.namespace,
    cgroupId: e.cgroupId,
    mntns: e.mntns,
    direction: e.direction,
    dnsName: e.dnsName,
    peer: e.peer,
  };
}

function lend(from: Lent, to: ConnEvent): void {
  to.pid = from.pid;
  to.tid = from.tid;
  to.ppid = from.ppid;
  to.uid = from.uid;
  to.gid = from.gid;
  to.user = from.user;
  to.comm = from.comm;
  to.exe = from.exe;
  to.args = from.args;
  to.procSource = from.procSource;
  to.latencyUs = from.latencyUs;
  to.container = from.container;
  to.containerId = from.containerId;
  to.containerRuntime = from.containerRuntime;
  to.image = from.image;
  to.pod = from.pod;
  to.namespace = from.namespace;
  to.cgroupId = from.cgroupId;
  to.mntns = from.mntns;
  to.direction = from.direction;
  to.dnsName = from.dnsName;
  // Who was at the address when it opened; the close's own is as of its end, when no opening named one.
  to.peer = from.peer ?? to.peer;
  // An active opener's count of acknowledged sequence space starts with its SYN;
  // the kernel knew whether it had opened the connection unless it was existing.
  if (to.existing && from.direction === "outbound" && to.bytesSent > 0) to.bytesSent--;
}

/** ... and from a connect that NameOnlyConnects kept: the rest, the close's own enrichment says alike. */
function lendOpening(from: Opening, to: ConnEvent): void {
  to.dnsName = from.dnsName;
  to.exe = from.proc.exe;
  to.args = from.proc.args;
  to.procSource = from.proc.source;
}

/**
 * Joins close records to their connection's opening record. Opening records are
 * passed on unchanged; so are close records whose opening was never seen or was
 * forgotten (counted as `unjoined`: they carry the kernel's task). An inbound close whose
 * accept has not come yet waits for it, at most PARK_MS, and then follows it.
 */
export class ConnJoin extends Stage<ConnEvent> {
  readonly name = "join";
  override readonly notable: ReadonlySet<string> = new Set(["forgotten"]);
  #open = new Map<number, Lent | Opening>();
  /** Inbound closes that came before their accept, by connId, with their deadlines. */
  #parked = new Map<number, { e: ConnEvent; deadline: number }>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #max: number;
  #now: () => number;
  #joined = 0;
  #unjoined = 0;
  #forgotten = 0;
  #waited = 0;

  #acceptsCome: boolean;

  /** @param acceptsCome accept records arrive (false with close records alone: an inbound close never waits) */
  constructor(max = MAX_OPEN, now = () => performance.now(), acceptsCome = true) {
    super();
    this.#max = max;
    this.#now = now;
    this.#acceptsCome = acceptsCome;
  }

  /** Connections open (remembered) now. */
  get open(): number {
    return this.#open.size;
  }

  push(e: ConnEvent): void {
    const key = e.connId;
    if (key === 0) {
      this.emit(e);
      return;
    }
    if (e.event !== "close") {
      const parked = this.#parked.get(key);
      this.emit(e);
      if (parked) {
        // The close came first: out it goes now, after its accept.
        // The timer stays: when it fires it finds nothing due, or arms for what is parked then
        // (a timer made and cleared per connection was ~4% of the CPU of --events all).
        this.#parked.delete(key);
        lend(e, parked.e);
        this.#joined++;
        this.emit(parked.e);
      } else if (e.status === "established" || e.status === "existing") {
        this.#remember(key, kept(e));
      }
      return;
    }
    const from = this.#open.get(key);
    if (from) {
      this.#open.delete(key);
      if ("proc" in from) lendOpening(from, e);
      else lend(from, e);
      this.#joined++;
      this.emit(e);
    } else if (e.direction === "inbound" && this.#acceptsCome) {
      this.#park(key, e);
    } else {
      this.#unjoined++;
      this.emit(e);
    }
  }

  #park(key: number, e: ConnEvent): void {
    if (this.#parked.size >= MAX_PARKED) this.#release(1);
    this.#waited++;
    this.#parked.set(key, { e, deadline: this.#now() + PARK_MS });
    if (!this.#timer) this.#arm();
  }

  /** Send out unjoined the parked closes whose time is up (`all`: the oldest `all` of them, or every one). */
  #release(all = 0): void {
    const now = this.#now();
    let n = 0;
    for (const [id, p] of this.#parked) {
      if (n >= all && p.deadline > now) break;
      this.#parked.delete(id);
      this.#unjoined++;
      this.emit(p.e);
      n++;
    }
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const first = this.#parked.values().next();
    if (first.done) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#release();
      this.ctx.flushSoon();
      this.#arm();
    }, Math.max(0, first.value.deadline - this.#now()) + 1);
  }

  /** At stop: every parked close goes out as it is. */
  override drain(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#release(Infinity);
  }

  /** Keep what an established connect's close takes from it (NameOnlyConnects, ahead of enrichment). */
  remember(connId: number, opening: Opening): void {
    this.#remember(connId, opening);
  }

  #remember(connId: number, e: Lent | Opening): void {
    if (!this.#open.has(connId) && this.#open.size >= this.#max) {
      // Maps iterate in insertion order: the first key is the oldest connection.
      const oldest = this.#open.keys().next().value!;
      this.#open.delete(oldest);
      this.#forgotten++;
    }
    this.#open.set(connId, e);
  }

  override counters(): Counters {
    return {
      open: this.#open.size,
      joined: this.#joined,
      unjoined: this.#unjoined,
      forgotten: this.#forgotten,
      waitedForAccept: this.#waited,
    };
  }
}

/**
 * With `--events close` and DNS names on, the kernel still sends each connect
 * outcome for one thing: the words its close takes from it (the peer's name then,
 * which may have expired by the close). These records are taken from the ring
 * before they are decoded (DecodeStage's takeConnect): an established one leaves
 * its Opening with the join, by connId, and none goes further (each counts as
 * filtered, as the filter would have counted it). What it computes is what
 * enrich() would have for the connect. The pipeline is synchronous, so every
 * record before it (a DNS answer, an exec) has taught the caches by then.
 */
export class NameOnlyConnects {
  #join: ConnJoin;
  #names: NameSource;
  #processes: ProcessCache;

  constructor(join: ConnJoin, names: NameSource, processes: ProcessCache) {
    this.#join = join;
    this.#names = names;
    this.#processes = processes;
  }

  /** Take the connect record at byte `b` of `v` (always: the start-up snapshot's come another way). */
  take(v: DataView, b = 0): boolean {
    if (v.getUint8(b + CONN.status.offset) !== ESTABLISHED) return true; // no close follows
    const connId = connIdAt(v, b + CONN.conn_id.offset);
    if (connId === 0) return true; // not tracked: no close follows
    this.#join.remember(connId, {
      dnsName: this.#names.lookup(v.getBigUint64(b + CONN.netns_cookie.offset, true), peerAddress(v, b)),
      proc: this.#processes.lookup(
        v.getUint32(b + CONN.pid.offset, true),
        v.getBigUint64(b + CONN.proc_start_ns.offset, true),
        v.getBigUint64(b + CONN.start_ns.offset, true),
      ),
    });
    return true;
  }
}

const ESTABLISHED = STATUS_NAMES.indexOf("established");
