/**
 * Worker that waits on the BPF ring buffer off the main thread: the doorbell.
 *
 * It blocks in epoll_wait (bounded, so a stop request is seen within one timeout),
 * pauses a few milliseconds after each wake-up while events keep coming so that a
 * burst is taken in one pass, and tells the main thread how far the kernel wrote.
 * The main thread reads the committed records in place from its own mapping of
 * the ring and says how far it got; only then does this worker give that space
 * back to the kernel. This worker maps only the two position pages. Nothing is copied, and while the main thread is busy
 * the ring itself (whose loss counter is reported) absorbs the backlog.
 * @module
 */
/// <reference lib="deno.worker" />
import { RingDoorbell } from "./ring_reader.ts";
import type { FromWorker, ToWorker } from "./ring_consumer.ts";

const WAIT_MS = 100;
const QUIET_MS = 100;

let stopping = false;
/** Resolves with the position the main thread has read up to. */
let acked: ((upto: number) => void) | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const post = (m: FromWorker) => self.postMessage(m);

/**
 * Offer what the kernel wrote to the main thread, which reads the committed
 * records and says how far it got; release that. False when nothing was read
 * (nothing written, or the first record not committed yet).
 */
async function offer(bell: RingDoorbell, size: number): Promise<boolean> {
  const start = bell.consumed;
  const end = bell.produced;
  if (end === start) return false;
  const read = new Promise<number>((r) => (acked = r));
  post({ type: "range", start, end, fill: (end - start) / size });
  const upto = await read;
  bell.release(upto);
  return upto > start;
}

async function run(m: Extract<ToWorker, { type: "start" }>): Promise<void> {
  let reader: RingDoorbell;
  try {
    reader = new RingDoorbell(m.fd, m.pageSize);
  } catch (e) {
    post({ type: "error", message: e instanceof Error ? e.message : String(e) });
    post({ type: "stopped" });
    return;
  }
  let lastWake = -Infinity;
  try {
    while (!stopping) {
      const woke = reader.pending() > 0 || reader.wait(WAIT_MS);
      // Coalesce only while events keep coming: after a quiet spell the first
      // one goes out at once instead of waiting for company.
      const now = performance.now();
      if (woke && m.coalesceMs > 0 && now - lastWake < QUIET_MS) await sleep(m.coalesceMs);
      if (woke) {
        lastWake = now;
        // A record reserved but not yet committed: give its writer a moment.
        if (!(await offer(reader, m.size))) await sleep(1);
      } else {
        await sleep(0); // idle: let a stop message in (offer and sleep yield otherwise)
      }
    }
    while (await offer(reader, m.size)) { /* what is left */ }
  } catch (e) {
    post({ type: "error", message: e instanceof Error ? e.message : String(e) });
  } finally {
    reader.close();
    post({ type: "stopped" });
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  switch (m.type) {
    case "start":
      run(m);
      break;
    case "ack":
      acked?.(m.upto);
      acked = undefined;
      break;
    case "stop":
      stopping = true;
      break;
  }
};
