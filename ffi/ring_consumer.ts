/**
 * The ring buffer's consumer, on the main thread without a blocking call: a timer
 * looks at the producer position every few milliseconds, and when the kernel has
 * written, the committed records are read in place from a read-only mapping of the
 * ring (no copy, no other thread, no epoll) and the space is given back. Signals
 * and timers are never held up: reading a ring's worth of records takes a few
 * milliseconds, and between reads the thread is free.
 *
 * The pause between looks is what batches a burst: at 20 ms and the storm rates
 * measured in `make bench` a batch is a few hundred records, far below the ring's
 * capacity, whose loss counter (reported) covers a main thread stalled longer.
 * A look hands on at most MAX_BATCH_BYTES of records and then lets the event loop
 * run (the output's writes, signals) before the next: a full ring read in one go
 * would queue tens of megabytes of output behind a writer that cannot run.
 * @module
 */
import { RingPositions, RingView } from "./ring_reader.ts";

/** Ring bytes handed on per look at most (~3,000 connection records). */
export const MAX_BATCH_BYTES = 1 << 20;

/**
 * One record as the consumer hands it on: `length` bytes at byte `offset` of
 * `view`. The same object is reused for every record, over one view of the whole
 * ring (a DataView per record is a call into the runtime's C++ per record): it,
 * and the bytes, are valid only during the call.
 */
export interface RingRecord {
  view: DataView;
  offset: number;
  length: number;
}

/** Options for {@link RingConsumer}. */
export interface RingConsumerOptions {
  /** How often to look for records (ms). */
  pollMs?: number;
  /** Called after each batch's records, e.g. to flush output once per batch. */
  onBatch?: () => void;
  /**
   * Whether to leave the records in the ring for now (the output is behind): the
   * ring is the buffer, and what overflows it the kernel counts as lost.
   */
  hold?: () => boolean;
}

/**
 * Consumes a ring buffer map.
 *
 * @example
 * ```ts
 * const rc = new RingConsumer(fd, size, pageSize(), (rec) => decode(rec.view, rec.offset), onError);
 * // ...
 * rc.stop();
 * ```
 */
export class RingConsumer {
  #positions: RingPositions;
  #view: RingView;
  #size: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** The next look, soon, when a look left records behind. */
  #again: ReturnType<typeof setTimeout> | undefined;
  #record: (buffer: ArrayBuffer, offset: number, length: number) => void;
  #onBatch: () => void;
  #hold: () => boolean;
  #onError: (message: string) => void;
  #lastFill = 0;
  #maxFill = 0;

  /** How full the ring was (0..1) at the last look that found records. */
  get lastFill(): number {
    return this.#lastFill;
  }

  /** The fullest the ring has been at a look since start (0..1). */
  get maxFill(): number {
    return this.#maxFill;
  }

  /**
   * @param onRecord called for every record, in order, with a {@link RingRecord}
   *   valid only during the call
   * @param onError called once if reading fails (the consumer then stops)
   */
  constructor(
    fd: number,
    size: number,
    pageSize: number,
    onRecord: (record: RingRecord) => void,
    onError: (message: string) => void,
    options: RingConsumerOptions = {},
  ) {
    this.#positions = new RingPositions(fd, pageSize);
    try {
      this.#view = new RingView(fd, size, pageSize);
    } catch (e) {
      this.#positions.close();
      throw e;
    }
    this.#size = size;
    const ring = this.#view.buffer;
    const whole = new DataView(ring);
    const rec: RingRecord = { view: whole, offset: 0, length: 0 };
    this.#record = (buffer, offset, length) => {
      // The one record a lap that wraps round the end comes in a buffer of its own.
      if (rec.view.buffer !== buffer) rec.view = buffer === ring ? whole : new DataView(buffer);
      rec.offset = offset;
      rec.length = length;
      onRecord(rec);
    };
    this.#onBatch = options.onBatch ?? (() => {});
    this.#hold = options.hold ?? (() => false);
    this.#onError = onError;
    this.#timer = setInterval(() => this.#read(), options.pollMs ?? 20);
  }

  /** Read what is committed, hand it on, give the space back (unless held, but always at stop). */
  #read(final = false): void {
    if (!final && this.#hold()) return;
    const start = this.#positions.consumed;
    const end = this.#positions.produced;
    if (end === start) return;
    const fill = (end - start) / this.#size;
    this.#lastFill = fill;
    if (fill > this.#maxFill) this.#maxFill = fill;
    let upto = start;
    try {
      upto = this.#view.read(start, Math.min(end, start + MAX_BATCH_BYTES), this.#record);
      this.#onBatch();
      if (upto < end && this.#again === undefined && this.#timer !== undefined) {
        this.#again = setTimeout(() => {
          this.#again = undefined;
          this.#read();
        }, 0);
      }
    } catch (e) {
      this.#stopTimer();
      this.#onError(e instanceof Error ? e.message : String(e));
    } finally {
      this.#positions.release(upto);
    }
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#again);
    this.#again = undefined;
  }

  /** Read what is left (call it after detaching, so nothing new arrives) and release the ring. */
  stop(): void {
    const running = this.#timer !== undefined;
    this.#stopTimer();
    // Everything that is left, batch after batch, while batches make progress.
    for (let before = -1; running && this.#positions.consumed !== before;) {
      before = this.#positions.consumed;
      this.#read(true);
    }
    this.#view.close(); // both are idempotent
    this.#positions.close();
  }
}
