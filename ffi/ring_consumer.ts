/**
 * The main thread's side of the ring buffer: starts the draining Worker and hands
 * each batch of raw records to a callback.
 * @module
 */

/** Messages to the ring worker. */
export type ToWorker =
  | {
    type: "start";
    fd: number;
    size: number;
    pageSize: number;
    coalesceMs: number;
    batchBytes: number;
    maxInFlightBytes: number;
  }
  | { type: "ack"; bytes: number }
  | { type: "stop" };

type FromWorker =
  | { type: "batch"; buf: ArrayBuffer; bytes: number; records: number; fill: number }
  | { type: "error"; message: string }
  | { type: "stopped" };

/** Options for {@link RingConsumer}. */
export interface RingConsumerOptions {
  /** Pause after a wake-up so a burst is read in one pass (ms). */
  coalesceMs?: number;
  /** Size of one batch handed to the main thread. */
  batchBytes?: number;
  /** Stop draining while this many bytes wait for the main thread. */
  maxInFlightBytes?: number;
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
 * Consumes a ring buffer map off the main thread.
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
  #stopped: Promise<void>;
  #lastFill = 0;
  #maxFill = 0;

  /** How full the ring was (0..1) when the worker last drained it. */
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
    this.#worker = new Worker(workerUrl(), { type: "module" });
    let resolveStopped: () => void;
    this.#stopped = new Promise((r) => resolveStopped = r);
    this.#worker.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "batch") {
        this.#lastFill = m.fill;
        if (m.fill > this.#maxFill) this.#maxFill = m.fill;
        const view = new DataView(m.buf);
        let pos = 0;
        while (pos < m.bytes) {
          const len = view.getUint32(pos, true);
          onRecord(new DataView(m.buf, pos + 4, len));
          pos += 4 + ((len + 3) & ~3);
        }
        options.onBatch?.();
        this.#post({ type: "ack", bytes: m.bytes });
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
    this.#post({
      type: "start",
      fd,
      size,
      pageSize,
      coalesceMs: options.coalesceMs ?? 10,
      batchBytes: options.batchBytes ?? 1 << 20,
      maxInFlightBytes: options.maxInFlightBytes ?? 64 << 20,
    });
  }

  #post(m: ToWorker): void {
    this.#worker.postMessage(m);
  }

  /** Drain what is left, stop the worker and wait for it (bounded by `timeoutMs`). */
  async stop(timeoutMs = 1000): Promise<void> {
    this.#post({ type: "stop" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#stopped,
      new Promise((r) => timer = setTimeout(r, timeoutMs)),
    ]);
    clearTimeout(timer);
    this.#worker.terminate();
  }
}
