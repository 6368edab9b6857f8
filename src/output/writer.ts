/**
 * Buffered line output to a file descriptor: lines are collected and written in
 * one call per batch of events.
 * @module
 */

/** Where lines go; Deno.stdout in production, a buffer in tests. */
export interface SyncSink {
  writeSync(p: Uint8Array): number;
}

const NEWLINE = 0x0a;

/**
 * Collects lines in one reused buffer and writes them on flush(), or when the
 * buffer fills. A line that does not fit an empty buffer is written on its own.
 */
export class LineWriter {
  #sink: SyncSink;
  #buf: Uint8Array;
  #len = 0;
  #encoder = new TextEncoder();

  constructor(sink: SyncSink, bufferBytes = 1 << 20) {
    this.#sink = sink;
    this.#buf = new Uint8Array(bufferBytes);
  }

  /** Queue one line (without its newline). */
  line(s: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (this.#len + s.length * 3 + 1 > this.#buf.length) {
      this.flush();
      if (s.length * 3 + 1 > this.#buf.length) {
        this.#write(this.#encoder.encode(s + "\n"));
        return;
      }
    }
    this.#len += this.#encoder.encodeInto(s, this.#buf.subarray(this.#len)).written;
    this.#buf[this.#len++] = NEWLINE;
  }

  #write(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) off += this.#sink.writeSync(bytes.subarray(off));
  }

  /** Write everything queued. Throws the sink's error (e.g. BrokenPipe). */
  flush(): void {
    if (this.#len === 0) return;
    const n = this.#len;
    this.#len = 0; // what failed to write is dropped, never written twice
    this.#write(this.#buf.subarray(0, n));
  }
}
