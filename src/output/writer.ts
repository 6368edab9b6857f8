/**
 * Line output that never blocks the pipeline: lines are collected per batch of
 * events, and each batch is queued for an asynchronous writer. A reader that
 * stops reading (a stalled pipe, a paused terminal) fills the bounded queue, and
 * from then on whole batches are dropped and counted until it reads again;
 * signals, timers and the ring buffer keep being served meanwhile.
 * @module
 */

/**
 * Where lines go: Deno.stdout in production, a buffer in tests. The bytes passed
 * to write() are the writer's again once it returns (or its promise settles): a
 * sink that keeps them must copy them.
 */
export interface Sink {
  write(p: Uint8Array): Promise<number> | number;
}

/** Why lines were not written, as the ledger names the causes. */
export interface WriteDrops {
  /** The reader did not keep up: the queue was full. */
  "output-stalled": number;
  /** The write failed (EIO, ENOSPC on a redirected file, ...). */
  "output-failed": number;
  /** The reader went away (EPIPE) with these still queued. */
  "output-closed": number;
}

interface Chunk {
  bytes: Uint8Array;
  events: number;
  /** The spare-able buffer `bytes` lies in, when it came from the writer's spares. */
  owner?: Uint8Array;
}

/** The memory a queued chunk holds: its whole buffer. */
const held = (c: Chunk) => c.owner?.length ?? c.bytes.length;

const NEWLINE = 0x0a;
/** Lines are written in batches; this much is queued at most before batches are dropped. */
export const MAX_QUEUED_BYTES = 16 << 20;
/**
 * Over this much queued, and the reader still taking it, the producer holds back
 * (backlogged): the ring is the buffer. Under an `--events all` storm at two clients
 * the queue does fill (the storm has both cores, the writes wait their turn), and
 * what it holds is memory: held back at 8 MiB, the queue reached 12 MiB, with a peak
 * RSS 10 MB higher than at 2. The bound above stays far off: one look at the ring
 * (1 MiB of records) renders up to ~3 MiB of JSON, and a queue bound within that of
 * the hold dropped batches (`output-stalled`) of a reader that was keeping up.
 */
export const HOLD_QUEUED_BYTES = 2 << 20;
/** A write pending this long means the reader stopped reading (ms). */
const STALLED_WRITE_MS = 1000;
/** The least and the most one write asks for: a pipe's buffer, and a batch. */
export const MIN_WRITE = 64 << 10;
export const MAX_WRITE = 1 << 20;

/**
 * How much the next write asks for, after one that wrote `n` bytes in `ms`: twice as
 * much after a fast one, at most what the reader takes in a quarter of a second. A
 * slow reader then completes a write now and then, so it counts as slow (lightmon
 * holds back), not stalled (lines dropped): one write of a whole 1 MiB batch took five
 * seconds at 200 KB/s. A fast one gets few, large writes (each costs a thread hop).
 */
export function nextWriteSize(size: number, n: number, ms: number): number {
  const quarterSecond = (n / Math.max(ms, 0.01)) * 250;
  return Math.max(MIN_WRITE, Math.min(MAX_WRITE, size * 2, quarterSecond));
}
/**
 * Written batch buffers kept for the next batches, up to this many bytes in all: about
 * what the queue holds under a storm (held back at HOLD_QUEUED_BYTES, plus a look's
 * worth), so that a queue that filled and drained again refills from spares. A
 * fresh buffer per batch cost more than all the rendering: every page of it is
 * faulted in, and given back, once per batch (1.5 µs per event in bench/pipeline.ts
 * on this machine). Kept by count (four) and by a tight fit, 104 of 200 batches of
 * `--events all` at two clients were fresh buffers (100 MB in one 3-second storm,
 * each freed only when V8 collects its wrapper); kept by bytes and taken by best fit,
 * 92 of 500.
 */
const SPARE_BYTES = 2 * HOLD_QUEUED_BYTES;

/**
 * Collects lines in one reused buffer; flush() queues them for writing. A line
 * that does not fit an empty buffer is queued on its own. Each line says how many
 * events it carries (a table's header carries none), so drops are counted in events.
 */
export class LineWriter {
  #sink: Sink;
  #log: (line: string) => void;
  #buf: Uint8Array;
  #spares: Uint8Array[] = [];
  #spareBytes = 0;
  #len = 0;
  #events = 0;
  #encoder = new TextEncoder();
  #queue: Chunk[] = [];
  #queued = 0;
  #maxQueued: number;
  #holdAt: number;
  /** The writer loop, while `#running`: it clears the flag the moment the queue is empty. */
  #pumping: Promise<void> = Promise.resolve();
  #running = false;
  #closed = false;
  #failing = false;
  #stalled = false;
  #drops: WriteDrops = { "output-stalled": 0, "output-failed": 0, "output-closed": 0 };
  /** What the next write asks for (nextWriteSize). */
  #writeSize = MIN_WRITE;
  /** When the write in flight began (performance.now()). */
  #writeSince = 0;

  constructor(sink: Sink, log: (line: string) => void = () => {}, bufferBytes = 1 << 20, maxQueued = MAX_QUEUED_BYTES) {
    this.#sink = sink;
    this.#log = log;
    this.#buf = new Uint8Array(bufferBytes);
    this.#maxQueued = maxQueued;
    this.#holdAt = Math.min(HOLD_QUEUED_BYTES, maxQueued / 2);
  }

  /** Whether the reader went away (EPIPE): the run should end. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Events not written, by cause. */
  get drops(): Readonly<WriteDrops> {
    return this.#drops;
  }

  /** Queue one line (without its newline) carrying `events` events. */
  line(s: string, events = 1): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (this.#len + s.length * 3 + 1 > this.#buf.length) {
      this.flush();
      if (s.length * 3 + 1 > this.#buf.length) {
        this.#enqueue(this.#encoder.encode(s + "\n"), events);
        return;
      }
    }
    this.#len += this.#encoder.encodeInto(s, this.#buf.subarray(this.#len)).written;
    this.#buf[this.#len++] = NEWLINE;
    this.#events += events;
  }

  /**
   * Queue the first `len` bytes of `bytes`, whole lines with their newlines,
   * carrying `events` events: a renderer that builds a batch's lines itself hands
   * them over in one copy (after what line() collected, in order).
   */
  lines(bytes: Uint8Array, len: number, events: number): void {
    if (len === 0) return;
    this.flush();
    this.#enqueueCopy(bytes, len, events);
  }

  /**
   * More than HOLD_QUEUED_BYTES (or half the queue's bound, if less) is waiting and
   * the reader is taking it, only slower than it comes: the producer should hold
   * back (lightmon stops reading the ring, whose overflow the kernel counts). A
   * reader that stopped taking anything (a write pending for a second) gets no such
   * say: its lines are dropped and counted as `output-stalled`, and lightmon goes on.
   */
  get backlogged(): boolean {
    return this.#queued > this.#holdAt && performance.now() - this.#writeSince < STALLED_WRITE_MS;
  }

  /** Queue everything collected for writing. */
  flush(): void {
    if (this.#len === 0) return;
    const len = this.#len;
    const events = this.#events;
    this.#len = 0;
    this.#events = 0;
    this.#enqueueCopy(this.#buf, len, events);
  }

  /** Queue a copy of the first `len` bytes of `bytes`, in a spare buffer when one is big enough. */
  #enqueueCopy(bytes: Uint8Array, len: number, events: number): void {
    if (!this.#admit(len, events)) return;
    // Buffers come in powers of two from 4 KiB; the smallest spare that holds the batch, up to four
    // times its size, is taken.
    const size = 2 ** Math.ceil(Math.log2(Math.max(len, 4096)));
    const owner = this.#spare(len, 4 * size) ?? new Uint8Array(size);
    owner.set(bytes.subarray(0, len));
    this.#push({ bytes: owner.subarray(0, len), events, owner });
  }

  /**
   * The smallest spare of `len` to `most` bytes, taken from the spares. A queued batch
   * counts its whole buffer against the queue's bound, so a small batch does not take
   * a big spare.
   */
  #spare(len: number, most: number): Uint8Array | undefined {
    let best = -1;
    for (let i = 0; i < this.#spares.length; i++) {
      const n = this.#spares[i].length;
      if (n >= len && n <= most && (best < 0 || n < this.#spares[best].length)) best = i;
    }
    return best < 0 ? undefined : this.#takeSpare(best);
  }

  /** Spare `i`, out of the spares (the last one takes its place). */
  #takeSpare(i: number): Uint8Array {
    const b = this.#spares[i];
    this.#spares[i] = this.#spares[this.#spares.length - 1];
    this.#spares.pop();
    this.#spareBytes -= b.length;
    return b;
  }

  /** Keep a written buffer for a later batch, giving up the smallest spares beyond SPARE_BYTES. */
  #keep(b: Uint8Array): void {
    this.#spares.push(b);
    this.#spareBytes += b.length;
    while (this.#spareBytes > SPARE_BYTES) {
      let min = 0;
      for (let i = 1; i < this.#spares.length; i++) if (this.#spares[i].length < this.#spares[min].length) min = i;
      this.#takeSpare(min);
    }
  }

  #enqueue(bytes: Uint8Array, events: number): void {
    if (this.#admit(bytes.length, events)) this.#push({ bytes, events });
  }

  /** Whether `len` more bytes may be queued; if not, the events are counted as dropped. */
  #admit(len: number, events: number): boolean {
    if (this.#closed) {
      this.#drops["output-closed"] += events;
      return false;
    }
    if (this.#queued + len > this.#maxQueued && this.#queue.length > 0) {
      this.#drops["output-stalled"] += events;
      if (!this.#stalled) {
        this.#stalled = true;
        this.#log(`lightmon: output: the reader is not keeping up; dropping events until it does`);
      }
      return false;
    }
    return true;
  }

  #push(chunk: Chunk): void {
    this.#queue.push(chunk);
    this.#queued += held(chunk);
    if (!this.#running) {
      this.#running = true;
      this.#pumping = this.#pump();
    }
  }

  /** Write until the queue is empty; `#running` goes false in the same tick the queue is seen empty. */
  async #pump(): Promise<void> {
    for (;;) {
      const chunk = this.#queue[0];
      if (!chunk) {
        this.#running = false;
        return;
      }
      let off = 0;
      try {
        while (off < chunk.bytes.length) {
          const since = this.#writeSince = performance.now();
          const n = await this.#sink.write(chunk.bytes.subarray(off, off + this.#writeSize));
          off += n;
          this.#writeSize = nextWriteSize(this.#writeSize, n, performance.now() - since);
        }
        // Said once the writes succeed again (failing) or the queue caught up (stalled).
        if (this.#failing || (this.#stalled && this.#queue.length === 1)) {
          this.#log(`lightmon: output: writing again; ${this.#lost()} events were dropped so far`);
          this.#failing = this.#stalled = false;
        }
      } catch (e) {
        if (e instanceof Deno.errors.BrokenPipe) {
          this.#closed = true;
          for (const c of this.#queue) this.#drops["output-closed"] += c.events;
          this.#queue = [];
          this.#queued = 0;
          this.#running = false;
          return;
        }
        // A partly written batch counts whole: its tail is gone and its head unreadable.
        this.#drops["output-failed"] += chunk.events;
        if (!this.#failing) {
          this.#failing = true;
          this.#log(`lightmon: output: cannot write (${e instanceof Error ? e.message : e}); dropping events`);
        }
      }
      if (this.#queue[0] !== chunk) continue; // settle() gave up on it meanwhile
      this.#queue.shift();
      this.#queued -= held(chunk);
      // Written (or failed): no write holds it now. A batch settle() gave up on may still be in a write: never reused.
      if (chunk.owner) this.#keep(chunk.owner);
    }
  }

  #lost(): number {
    const d = this.#drops;
    return d["output-stalled"] + d["output-failed"] + d["output-closed"];
  }

  /**
   * Write what is queued, waiting at most `ms`: what is still queued after that
   * (the reader stopped reading) is counted as stalled and given up.
   */
  async settle(ms: number): Promise<void> {
    this.flush();
    if (!this.#running) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms)));
    const done = await Promise.race([this.#pumping.then(() => "done" as const), late]);
    clearTimeout(timer);
    if (done === "late") {
      for (const c of this.#queue) this.#drops["output-stalled"] += c.events;
      this.#queue = [];
      this.#queued = 0;
    }
  }
}
