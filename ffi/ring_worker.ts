/**
 * Worker that drains the BPF ring buffer off the main thread.
 *
 * It blocks in epoll_wait (bounded, so a stop request is seen within one timeout),
 * pauses a few milliseconds after each wake-up so that a burst is taken in one
 * pass, copies the records into a batch and transfers the batch to the main
 * thread. It stops draining while too many bytes are unacknowledged: the kernel
 * ring then fills and its loss counter, not this worker's memory, absorbs a main
 * thread that cannot keep up.
 *
 * Batch format: repeated [u32 length, little endian][record bytes][pad to 4].
 * @module
 */
/// <reference lib="deno.worker" />
import { RingReader } from "./ring_reader.ts";
import type { ToWorker } from "./ring_consumer.ts";

const WAIT_MS = 100;
const QUIET_MS = 100;

let stopping = false;
let inFlight = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function flush(reader: RingReader, batchBytes: number, size: number): void {
  let pending;
  while ((pending = reader.pending()) > 0) {
    const fill = pending / size;
    // Records take no more room than they do in the ring: size the batch to fit.
    const batch = new Uint8Array(Math.min(batchBytes, pending));
    const view = new DataView(batch.buffer);
    let pos = 0;
    let records = 0;
    reader.drain((data, off, len) => {
      const need = 4 + ((len + 3) & ~3);
      if (pos + need > batch.length) return false;
      view.setUint32(pos, len, true);
      batch.set(data.subarray(off, off + len), pos + 4);
      pos += need;
      records++;
      return true;
    });
    if (records === 0) return; // a record is still being written
    inFlight += pos;
    self.postMessage({ type: "batch", buf: batch.buffer, bytes: pos, records, fill }, [batch.buffer]);
  }
}

async function run(m: Extract<ToWorker, { type: "start" }>): Promise<void> {
  let reader: RingReader;
  try {
    reader = new RingReader(m.fd, m.size, m.pageSize);
  } catch (e) {
    self.postMessage({ type: "error", message: e instanceof Error ? e.message : String(e) });
    return;
  }
  let lastWake = -Infinity;
  try {
    while (!stopping) {
      if (inFlight < m.maxInFlightBytes) {
        const woke = reader.pending() > 0 || reader.wait(WAIT_MS);
        // Coalesce only while events keep coming: after a quiet spell the first
        // one goes out at once instead of waiting for company.
        const now = performance.now();
        if (woke && m.coalesceMs > 0 && now - lastWake < QUIET_MS) await sleep(m.coalesceMs);
        if (woke) lastWake = now;
        flush(reader, m.batchBytes, m.size);
      } else {
        await sleep(m.coalesceMs || 1);
      }
      await sleep(0); // let stop and ack messages in
    }
    flush(reader, m.batchBytes, m.size);
  } catch (e) {
    self.postMessage({ type: "error", message: e instanceof Error ? e.message : String(e) });
  } finally {
    reader.close();
    self.postMessage({ type: "stopped" });
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  switch (m.type) {
    case "start":
      run(m);
      break;
    case "ack":
      inFlight -= m.bytes;
      break;
    case "stop":
      stopping = true;
      break;
  }
};
