/**
 * Connections that were already established when lightmon started, so an audit
 * does not miss long-lived sessions. A BPF task_file iterator walks every process's
 * open TCP sockets once, in the kernel; its records are lm_conn_event structs with
 * status existing (established) or listen.
 *
 * An established socket whose local port is listened on (same address, or a
 * wildcard one) was accepted, not opened, and is left out: lightmon reports
 * outbound connections.
 * @module
 */
import { decodeRecord, type RawConnect } from "./decode.ts";
import { CONN_SIZE } from "./layout.ts";
import type { BpfObject } from "../../ffi/libbpf.ts";
import { SNAPSHOT_PROGRAM } from "./loader.ts";

/** Split iterator records into outbound established connections. */
export function outboundExisting(records: readonly RawConnect[]): RawConnect[] {
  const listening = new Set<string>();
  for (const r of records) if (r.status === "listen") listening.add(`${r.saddr}|${r.sport}`);
  const listened = (r: RawConnect) =>
    listening.has(`${r.saddr}|${r.sport}`) || listening.has(`0.0.0.0|${r.sport}`) || listening.has(`::|${r.sport}`);
  return records.filter((r) => r.status === "existing" && !listened(r));
}

/** Run the loaded capture's iterator once; throws BpfError if the kernel refuses. */
export function existingConnections(object: BpfObject): RawConnect[] {
  const bytes = object.readIterator(SNAPSHOT_PROGRAM);
  const records: RawConnect[] = [];
  for (let off = 0; off + CONN_SIZE <= bytes.length; off += CONN_SIZE) {
    const r = decodeRecord(new DataView(bytes.buffer, bytes.byteOffset + off, CONN_SIZE));
    if (r?.kind === "connect") records.push(r);
  }
  return outboundExisting(records);
}
