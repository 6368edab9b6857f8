/**
 * Renderers over the one event schema.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
import { JsonBytes, writeJson } from "./json.ts";
import type { LineWriter } from "./writer.ts";

/** An output: takes events, writes them out on flush. */
export interface Renderer {
  event(e: ConnEvent): void;
  /** Write what is buffered (once per batch of events). */
  flush(): void;
  /** Final output (a table's bottom border, a summary) and release resources. */
  close(): void;
  /** After close: finish writing, for at most `ms`. */
  settle(ms: number): Promise<void>;
  /** Events taken but not written, by cause (`output-stalled`, `output-failed`, ...). */
  drops(): Readonly<Record<string, number>>;
  /** The output is behind but moving: the run should stop taking new records for a moment. */
  backlogged?(): boolean;
  /** The reader went away: the run should end. */
  readonly closed: boolean;
  /** Distinct flows so far, for a renderer that counts them (the summary). */
  flowCount?(): number;
  /** SIGHUP: reopen what it writes to by name (a log file rotated away), if it does. */
  reopen?(): void;
  /** Its own counters beside its drops (an exporter's requests and retries), and which are notable. */
  counters?(): Counters;
  readonly notable?: ReadonlySet<string>;
}

/** What every renderer on a LineWriter shares: flushing, settling, drops. */
export abstract class LineRenderer implements Renderer {
  protected readonly out: LineWriter;
  constructor(out: LineWriter) {
    this.out = out;
  }
  abstract event(e: ConnEvent): void;
  flush(): void {
    this.out.flush();
  }
  close(): void {
    this.out.flush();
  }
  settle(ms: number): Promise<void> {
    return this.out.settle(ms);
  }
  drops(): Readonly<Record<string, number>> {
    return this.out.drops;
  }
  backlogged(): boolean {
    return this.out.backlogged;
  }
  get closed(): boolean {
    return this.out.closed;
  }
}

/**
 * A batch of lines is handed to the writer once this full: 16 KiB short of 1 MiB,
 * so that a full batch with its last line (a few KiB at most) fits the writer's
 * 1 MiB buffers rather than the next size up.
 */
const BATCH_BYTES = (1 << 20) - (16 << 10);

/**
 * A renderer that writes its lines as bytes straight into one batch buffer (no
 * string, no copy per event); the batch goes to the writer at flush, once per
 * batch of events, or when it is full.
 */
export abstract class BatchRenderer extends LineRenderer {
  protected readonly batch = new JsonBytes();
  #events = 0;

  /** The line written into the batch is complete: its newline, and one event. */
  protected endLine(): void {
    const b = this.batch;
    b.ensure(1);
    b.buf[b.pos++] = 0x0a;
    this.#events++;
    if (b.pos >= BATCH_BYTES) this.handOver();
  }

  /** The batch to the writer (before anything written through `out.line()` after this). */
  protected handOver(): void {
    this.out.lines(this.batch.buf, this.batch.pos, this.#events);
    this.batch.pos = 0;
    this.#events = 0;
  }

  override flush(): void {
    this.handOver();
    super.flush();
  }
  override close(): void {
    this.handOver();
    super.close();
  }
}

/** JSON lines, written by the writer compiled from the registry. */
export class JsonRenderer extends BatchRenderer {
  event(e: ConnEvent): void {
    const b = this.batch;
    const start = b.pos;
    try {
      writeJson(e, b);
    } catch (err) {
      b.pos = start; // no half line: the render stage reports the fault
      throw err;
    }
    this.endLine();
  }
}

/**
 * The width of the terminal `stream` is (stdout by default), or COLUMNS, or
 * `fallback` when it is not a terminal (or a pty nobody sized, which says 0).
 */
export function terminalWidth(stream: { isTerminal(): boolean } = Deno.stdout, fallback = 160): number {
  try {
    if (stream.isTerminal()) {
      const { columns } = Deno.consoleSize();
      if (columns > 0) return columns;
    }
  } catch {
    // not a terminal
  }
  const c = Number(Deno.env.get("COLUMNS"));
  return Number.isInteger(c) && c > 40 ? c : fallback;
}

/**
 * The last stage: events into the renderer. A reader that went away (a closed
 * pipe) ends the run quietly; events the output could not write are counted by
 * cause, so the ledger still adds up.
 */
export class RenderStage extends Stage<ConnEvent, void> {
  readonly name = "output";
  #renderer: Renderer;
  #taken = 0;
  /** Emitted events by status: [IPv4, IPv6] counts (no string built per event). */
  #byStatus = new Map<string, [number, number]>();
  /** Told of every close record handed to the output (the metrics' duration and bytes). */
  onClose: ((e: ConnEvent) => void) | undefined;
  /** Told of every flow record handed to the output (the metrics' bytes: its closes' totals). */
  onFlow: ((e: ConnEvent) => void) | undefined;

  constructor(renderer: Renderer) {
    super();
    this.#renderer = renderer;
    this.notable = renderer.notable ?? new Set();
  }

  override readonly notable: ReadonlySet<string>;

  push(e: ConnEvent): void {
    try {
      this.#renderer.event(e); // no closure per event: this is the hot path
    } catch (err) {
      this.#fault(err);
    }
    this.#taken++;
    const f = e.flow;
    if (f) {
      // What a flow record stands for counts as its records would have.
      for (const [status, k] of f.statuses) this.#count(status, e.family, k);
      if (f.closes > 0) this.#count("closed", e.family, f.closes);
      this.onFlow?.(e);
      return;
    }
    this.#count(e.status, e.family, 1);
    if (e.event === "close") this.onClose?.(e);
  }

  #count(status: string, family: 4 | 6, k: number): void {
    let n = this.#byStatus.get(status);
    if (!n) this.#byStatus.set(status, n = [0, 0]);
    n[family === 6 ? 1 : 0] += k;
  }

  /** Events handed to the output by `${status} ${family}` (a flow record's by what it counted), for the metrics. */
  get byStatus(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [status, [v4, v6]] of this.#byStatus) {
      if (v4) out.set(`${status} 4`, v4);
      if (v6) out.set(`${status} 6`, v6);
    }
    return out;
  }

  override backlogged(): boolean {
    return this.#renderer.backlogged?.() ?? false;
  }

  override flush(): void {
    this.#guard(() => this.#renderer.flush());
    if (this.#renderer.closed) this.ctx.stop(0);
  }

  override housekeeping(): void {
    if (this.#renderer.closed) this.ctx.stop(0);
  }

  override close(): void {
    this.#guard(() => this.#renderer.close());
  }

  override settle(ms: number): Promise<void> {
    return this.#renderer.settle(ms);
  }

  /** Output faults are counted by the renderer; anything thrown here is a bug or a dead output. */
  #guard(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.#fault(e);
    }
  }

  #fault(e: unknown): void {
    if (e instanceof Deno.errors.BrokenPipe) return this.ctx.stop(0);
    this.ctx.log(`lightmon: cannot write output: ${e instanceof Error ? e.message : e}`);
    this.ctx.stop(1);
  }

  override counters(): Counters {
    const c: Counters = { ...this.#renderer.counters?.() };
    let dropped = 0;
    for (const [cause, n] of Object.entries(this.#renderer.drops())) {
      c[`dropped.${cause}`] = n;
      dropped += n;
    }
    c.emitted = this.#taken - dropped;
    return c;
  }
}
