/**
 * The main thread's side of the ring buffer: starts the waiting Worker and hands
 * each batch of raw records to a callback.
 * @module
 */

import { RingView } from "./ring_reader.ts";

/** Messages to the ring worker. */
export type ToWorker =
  | { type: "start"; fd: number; size: number; pageSize: number; coalesceMs: number }
  | { type: "ack"; upto: number }
  | { type: "stop" };

/** Messages from the ring worker: ring positions the kernel wrote up to, to read what is committed. */
export type FromWorker =
  | { type: "range"; start: number; end: number; fill: number }
  | { type: "error"; message: string }
  | { type: "stopped" };

/** Options for {@link RingConsumer}. */
export interface RingConsumerOptions {
  /** Pause after a wake-up while events keep coming, so a burst is read in one pass (ms, default 25; the first event after a quiet spell is read at once). */
  coalesceMs?: number;
  /** Called after each batch's records, e.g. to flush output once per batch. */
  onBatch?: () => void;
}

/**
 * The worker's module: beside this file in the source tree, or at ffi/ring_worker.js
 * next to a bundle's src/main.js (the layout `make dist` ships).
 */
function workerUrl(): string {
  const source = new URL("./ring_worker.ts", import.meta.url);
  try {
    Deno.statSync(source);
    return source.href;
  } catch {
    return new URL("../ffi/ring_worker.js", import.meta.url).href;
  }
}

/**
 * Consumes a ring buffer map: a Worker waits for records off the main thread and
 * says which are committed; the main thread reads them in place from its own
 * read-only mapping (no copy, no transfer) and hands each to a callback.
 *
 * @example
 * ```ts
 * const rc = new RingConsumer(fd, size, pageSize(), (rec) => decode(rec), onError);
 * // ...
 * await rc.stop();
 * ```
 */
export class RingConsumer {
  #worker: Worker;
  #view: RingView;
  #stopped: Promise<void>;
  #closed = false;
  #lastFill = 0;
  #maxFill = 0;

  /** How full the ring was (0..1) when the worker last found records. */
  get lastFill(): number {
    return this.#lastFill;
  }

  /** The fullest the ring has been at a drain since start (0..1). */
  get maxFill(): number {
    return this.#maxFill;
  }

  /**
   * @param onRecord called for every record, in order, with a view valid only
   *   during the call
   * @param onError called once if the worker fails
   */
  constructor(
    fd: number,
    size: number,
    pageSize: number,
    onRecord: (record: DataView) => void,
    onError: (message: string) => void,
    options: RingConsumerOptions = {},
  ) {
    this.#view = new RingView(fd, size, pageSize);
    this.#worker = new Worker(workerUrl(), { type: "module" });
    let resolveStopped: () => void;
    this.#stopped = new Promise((r) => resolveStopped = r);
    const record = (buffer: ArrayBuffer, offset: number, length: number) =>
      onRecord(new DataView(buffer, offset, length));
    this.#worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "range") {
        if (this.#closed) return;
        this.#lastFill = m.fill;
        if (m.fill > this.#maxFill) this.#maxFill = m.fill;
        let upto = m.start;
        try {
          upto = this.#view.read(m.start, m.end, record);
          options.onBatch?.();
        } finally {
          this.#post({ type: "ack", upto });
        }
      } else if (m.type === "error") {
        onError(m.message);
      } else {
        resolveStopped();
      }
    };
    this.#worker.onerror = (e) => {
      e.preventDefault();
      onError(e.message);
      resolveStopped();
    };
    this.#post({ type: "start", fd, size, pageSize, coalesceMs: options.coalesceMs ?? 25 });
  }

  #post(m: ToWorker): void {
    this.#worker.postMessage(m);
  }

  /** Read what is left, stop the worker and wait for it (bounded by `timeoutMs`). */
  async stop(timeoutMs = 1000): Promise<void> {
    this.#post({ type: "stop" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#stopped,
      new Promise((r) => timer = setTimeout(r, timeoutMs)),
    ]);
    clearTimeout(timer);
    this.#worker.terminate();
    // No range is read after this: the mapping can go.
    this.#closed = true;
    this.#view.close();
  }
}
