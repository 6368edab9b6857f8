/**
 * Buffered line output to a file descriptor: lines are collected and written in
 * one call per batch of events.
 * @module
 */

/** Where lines go; Deno.stdout in production, a buffer in tests. */
export interface SyncSink {
  writeSync(p: Uint8Array): number;
}

/** Collects lines and writes them on flush(). */
export class LineWriter {
  #sink: SyncSink;
  #lines: string[] = [];
  #encoder = new TextEncoder();

  constructor(sink: SyncSink) {
    this.#sink = sink;
  }

  /** Queue one line (without its newline). */
  line(s: string): void {
    this.#lines.push(s);
  }

  /** Write everything queued. Throws the sink's error (e.g. BrokenPipe). */
  flush(): void {
    if (this.#lines.length === 0) return;
    const bytes = this.#encoder.encode(this.#lines.join("\n") + "\n");
    this.#lines = [];
    let off = 0;
    while (off < bytes.length) off += this.#sink.writeSync(bytes.subarray(off));
  }
}
