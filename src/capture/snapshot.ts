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
import { CONN_SIZE } from "./layout.ts";
import type { BpfObject } from "../../ffi/libbpf.ts";
import { SNAPSHOT_PROGRAM } from "./loader.ts";

/**
 * Established connections from the iterator's records: outbound ones, and the
 * accepted ones (marked inbound, event accept) when `inbound`. A socket shared by
 * several processes is reported once, for the first.
 */
export function classifyExisting(records: readonly RawConnect[], inbound = false): RawConnect[] {
  const listening = new Set<string>();
  for (const r of records) if (r.status === "listen") listening.add(`${r.saddr}|${r.sport}`);
  const listened = (r: RawConnect) =>
    listening.has(`${r.saddr}|${r.sport}`) || listening.has(`0.0.0.0|${r.sport}`) || listening.has(`::|${r.sport}`);
  const out: RawConnect[] = [];
  const seen = new Set<string>();
  for (const r of records) {
    if (r.status !== "existing") continue;
    const key = r.connId !== 0n ? String(r.connId) : tuple(r);
    if (seen.has(key)) continue;
    seen.add(key);
    if (!listened(r)) out.push(r);
    else if (inbound) out.push({ ...r, inbound: true, event: "accept" });
  }
  return out;
}

/** Run the loaded capture's iterator once; throws BpfError if the kernel refuses. */
export function existingConnections(object: BpfObject, inbound = false): RawConnect[] {
  const bytes = object.readIterator(SNAPSHOT_PROGRAM);
  const records: RawConnect[] = [];
  for (let off = 0; off + CONN_SIZE <= bytes.length; off += CONN_SIZE) {
    const r = decodeRecord(new DataView(bytes.buffer, bytes.byteOffset + off, CONN_SIZE));
    if (r?.kind === "connect") records.push(r);
  }
  return classifyExisting(records, inbound);
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
