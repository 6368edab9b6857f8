/**
 * Connections that were already established when lightmon started, so an audit
 * does not miss long-lived sessions. A BPF task_file iterator walks every process's
 * open TCP sockets once, in the kernel; its records are lm_conn_event structs with
 * status existing (established) or listen.
 *
 * An established socket whose local port is listened on (same address, or a
 * wildcard one) was accepted, not opened: it is reported as an accept (inbound)
 * when accepts are asked for, and left out otherwise.
 * @module
 */
import { type Counters, Stage } from "../stage.ts";
import { decodeRecord, type RawConnect } from "./decode.ts";
import type { CgroupCache } from "./cgroups.ts";
import { CONN_SIZE } from "./layout.ts";
import type { BpfObject } from "../../ffi/libbpf.ts";
import { SNAPSHOT_PROGRAM } from "./loader.ts";

/** Established connections the snapshot lists at most, and at most per user; listening sockets kept at most. */
export const MAX_EXISTING = 65_536;
export const MAX_EXISTING_PER_UID = 16_384;
export const MAX_LISTENERS = 65_536;

/** What the snapshot found. */
export interface Existing {
  /** Established connections: outbound ones, and accepted ones (marked inbound, event accept) when asked. */
  found: RawConnect[];
  /** Established connections past the bounds, not listed. */
  skipped: number;
  /** Local ports listened on, on any address (an existing connection's flow takes its direction from them). */
  listenedPorts: ReadonlySet<number>;
}

/**
 * Classifies the iterator's records as they stream in, within bounds: a user who
 * holds many sockets cannot make start-up hold them all (the kernel writes each
 * socket once, however many processes share it; repeats beyond its table are
 * dropped here). An established socket whose local port is listened on (same
 * address, or a wildcard one) was accepted.
 */
class ExistingClassifier {
  #inbound: boolean;
  #listening = new Set<string>();
  #ports = new Set<number>();
  #candidates: RawConnect[] = [];
  #seen = new Set<string>();
  #perUid = new Map<number, number>();
  #skipped = 0;

  constructor(inbound = false) {
    this.#inbound = inbound;
  }

  add(r: RawConnect): void {
    if (r.status === "listen") {
      if (this.#listening.size < MAX_LISTENERS) {
        this.#listening.add(`${r.saddr}|${r.sport}`);
        this.#ports.add(r.sport);
      }
      return;
    }
    if (r.status !== "existing") return;
    const key = r.connId !== 0 ? String(r.connId) : tuple(r);
    if (this.#seen.has(key)) return;
    const mine = this.#perUid.get(r.uid) ?? 0;
    if (this.#candidates.length >= MAX_EXISTING || mine >= MAX_EXISTING_PER_UID) {
      this.#skipped++;
      return;
    }
    this.#seen.add(key);
    this.#perUid.set(r.uid, mine + 1);
    this.#candidates.push(r);
  }

  result(): Existing {
    const l = this.#listening;
    const listened = (r: RawConnect) =>
      l.has(`${r.saddr}|${r.sport}`) || l.has(`0.0.0.0|${r.sport}`) || l.has(`::|${r.sport}`);
    const found: RawConnect[] = [];
    for (const r of this.#candidates) {
      if (!listened(r)) found.push(r);
      else if (this.#inbound) found.push({ ...r, inbound: true, event: "accept" });
    }
    return { found, skipped: this.#skipped, listenedPorts: this.#ports };
  }
}

/** Run the loaded capture's iterator once, streaming; throws BpfError if the kernel refuses. */
export function existingConnections(object: BpfObject, inbound = false, cgroups?: CgroupCache): Existing {
  const c = new ExistingClassifier(inbound);
  // A record may be split between two reads: its start waits here for the rest.
  const carry = new Uint8Array(CONN_SIZE);
  let carried = 0;
  object.readIterator(SNAPSHOT_PROGRAM, (bytes) => {
    let off = 0;
    if (carried > 0) {
      const take = Math.min(CONN_SIZE - carried, bytes.length);
      carry.set(bytes.subarray(0, take), carried);
      carried += take;
      off = take;
      if (carried < CONN_SIZE) return;
      const r = decodeRecord(new DataView(carry.buffer, 0, CONN_SIZE), cgroups);
      if (r?.kind === "connect") c.add(r);
      carried = 0;
    }
    for (; off + CONN_SIZE <= bytes.length; off += CONN_SIZE) {
      const r = decodeRecord(new DataView(bytes.buffer, bytes.byteOffset + off, CONN_SIZE), cgroups);
      if (r?.kind === "connect") c.add(r);
    }
    carry.set(bytes.subarray(off), 0);
    carried = bytes.length - off;
  });
  return c.result();
}

/** How long a new connection may duplicate one the start-up snapshot reported. */
const OVERLAP_MS = 10_000;

const tuple = (r: RawConnect) => `${r.saddr}|${r.sport}|${r.daddr}|${r.dport}`;

/**
 * Connections opened between attaching and the snapshot appear in both: the
 * snapshot's record (status existing) stands, the ring's established one is
 * dropped. The snapshot runs once at start, so the memory is kept only briefly.
 */
export class SnapshotOverlap extends Stage<RawConnect> {
  readonly name = "snapshot";
  #seen = new Set<string>();
  #since = 0;
  #duplicates = 0;
  #now: () => number;

  constructor(now = () => performance.now()) {
    super();
    this.#now = now;
  }

  push(r: RawConnect): void {
    if (r.status === "existing") {
      if (this.#seen.size === 0) this.#since = this.#now();
      this.#seen.add(tuple(r));
    } else if (this.#seen.size > 0 && r.status === "established") {
      if (this.#now() - this.#since > OVERLAP_MS) this.#seen.clear();
      else if (this.#seen.has(tuple(r))) {
        this.#duplicates++;
        return;
      }
    }
    this.emit(r);
  }

  override housekeeping(): void {
    if (this.#seen.size > 0 && this.#now() - this.#since > OVERLAP_MS) this.#seen.clear();
  }

  override counters(): Counters {
    return { duplicates: this.#duplicates };
  }
}
