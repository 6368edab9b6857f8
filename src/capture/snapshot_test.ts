import assert from "node:assert/strict";
import type { BpfObject } from "../../ffi/libbpf.ts";
import { existingConnections, MAX_EXISTING_PER_UID } from "./snapshot.ts";
import { CONN, CONN_SIZE, KIND } from "./layout.ts";

const EXISTING = 9;
const LISTEN = 10;

function record(sport: number, dport: number, status: number, uid = 0): Uint8Array {
  const v = new DataView(new ArrayBuffer(CONN_SIZE));
  v.setUint32(CONN.kind.offset, KIND.connect, true);
  v.setUint16(CONN.family.offset, 2, true);
  v.setUint8(CONN.status.offset, status);
  v.setUint32(CONN.uid.offset, uid, true);
  v.setUint16(CONN.sport.offset, sport, true);
  v.setUint16(CONN.dport.offset, dport, true);
  [127, 0, 0, 1].forEach((b, i) => v.setUint8(CONN.saddr.offset + i, b));
  [127, 0, 0, 1].forEach((b, i) => v.setUint8(CONN.daddr.offset + i, b));
  return new Uint8Array(v.buffer);
}

/** An object whose iterator writes `bytes`, handed over in reads of `chunk` bytes. */
function iterating(bytes: Uint8Array, chunk: number): BpfObject {
  return {
    readIterator(_name: string, onBytes: (b: Uint8Array) => void) {
      for (let off = 0; off < bytes.length; off += chunk) onBytes(bytes.slice(off, off + chunk));
    },
  } as unknown as BpfObject;
}

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
};

Deno.test("the snapshot streams: records split across reads decode whole, accepted sockets are told apart", () => {
  const bytes = concat([record(5432, 0, LISTEN), record(40000, 443, EXISTING), record(5432, 51000, EXISTING)]);
  for (const chunk of [1, 7, CONN_SIZE - 1, CONN_SIZE, CONN_SIZE + 5, 64 * 1024]) {
    const out = existingConnections(iterating(bytes, chunk), true);
    assert.deepEqual(out.found.map((r) => [r.sport, r.event, r.inbound]), [
      [40000, "connect", false],
      [5432, "accept", true],
    ], `reads of ${chunk}`);
    assert.equal(out.skipped, 0);
  }
});

Deno.test("one user's sockets past its bound are counted, not kept, and do not crowd out another's", () => {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < MAX_EXISTING_PER_UID + 10; i++) {
    parts.push(record(10_000 + (i % 50_000), 1 + (i >> 15), EXISTING, 65534));
  }
  parts.push(record(40000, 443, EXISTING, 0));
  const out = existingConnections(iterating(concat(parts), 64 * 1024));
  assert.equal(out.found.filter((r) => r.uid === 65534).length, MAX_EXISTING_PER_UID);
  assert.equal(out.skipped, 10);
  assert.ok(out.found.some((r) => r.uid === 0 && r.sport === 40000));
});
