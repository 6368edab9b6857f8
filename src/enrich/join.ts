/**
 * Close records to whole ones: the kernel's close record carries the connection's
 * counters and addresses but no task (it is often written in softirq). The
 * connection's opening record (connect, accept, or the start-up snapshot's) is
 * kept here by `connId` until its close arrives, and lends the close its process,
 * user and container.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";

/** Open connections remembered at most; beyond it the oldest is forgotten, and counted. */
export const MAX_OPEN = 65536;

/** The fields a close record takes from its opening record. */
function lend(from: ConnEvent, to: ConnEvent): void {
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
  // An active opener's count of acknowledged sequence space starts with its SYN;
  // the kernel knew whether it had opened the connection unless it was existing.
  if (to.existing && from.direction === "outbound" && to.bytesSent > 0) to.bytesSent--;
}

/**
 * Joins close records to their connection's opening record. Opening records are
 * passed on unchanged; so are close records whose opening was never seen (counted
 * as `unjoined`: they carry addresses and counters, pid 0).
 */
export class ConnJoin extends Stage<ConnEvent> {
  readonly name = "join";
  #open = new Map<bigint, ConnEvent>();
  #max: number;
  #joined = 0;
  #unjoined = 0;
  #forgotten = 0;

  constructor(max = MAX_OPEN) {
    super();
    this.#max = max;
  }

  /** Connections open (remembered) now. */
  get open(): number {
    return this.#open.size;
  }

  push(e: ConnEvent): void {
    if (e.connId === 0n) {
      this.emit(e);
      return;
    }
    if (e.event !== "close") {
      if (e.status === "established" || e.status === "existing") this.#remember(e);
      this.emit(e);
      return;
    }
    const from = this.#open.get(e.connId);
    if (from) {
      this.#open.delete(e.connId);
      lend(from, e);
      this.#joined++;
    } else {
      this.#unjoined++;
    }
    this.emit(e);
  }

  #remember(e: ConnEvent): void {
    if (!this.#open.has(e.connId) && this.#open.size >= this.#max) {
      // Maps iterate in insertion order: the first key is the oldest connection.
      const oldest = this.#open.keys().next().value!;
      this.#open.delete(oldest);
      this.#forgotten++;
    }
    this.#open.set(e.connId, e);
  }

  override counters(): Counters {
    return { open: this.#open.size, joined: this.#joined, unjoined: this.#unjoined, forgotten: this.#forgotten };
  }
}
