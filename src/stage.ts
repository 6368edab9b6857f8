/**
 * The unit of lightmon's pipeline (as Vector's transforms): a named stage takes
 * items one at a time, passes what it makes downstream with `emit`, and keeps its
 * own counters. Stages live in their layers (capture, enrich, filter, output); the
 * run controller links them and never needs to know what they do.
 *
 * Counters named `seen`, `emitted` and `filtered`, and those starting `dropped.`,
 * make up the run's ledger: `seen = emitted + filtered + dropped` (see
 * `ledger` in run/pipeline.ts). Any other counter is the stage's own; those it
 * declares `notable` (something was forgotten, evicted, refused or timed out) are
 * named on the exit line and by --stats whenever they are not zero, and every
 * counter of every stage is a metric (lightmon_stage_counter): none is kept where
 * nobody can see it.
 * @module
 */

/** What a stage may ask of the run it is part of. */
export interface StageContext {
  /** One line to stderr. */
  log(line: string): void;
  /** End the run (the controller detaches, drains and exits with `code`). */
  stop(code?: number): void;
  /** Flush the outputs soon: a stage emitted outside a ring batch (from a timer). */
  flushSoon(): void;
}

/** A stage's counters: names to counts. */
export type Counters = Record<string, number>;

/** A stage of the pipeline, taking `I` and emitting `O`. */
export abstract class Stage<I, O = I> {
  /** Names the stage in counters and metrics. */
  abstract readonly name: string;
  #ctx: StageContext | undefined;

  /**
   * Pass one item downstream. An own property, not a method: each stage's `push`
   * then loads it from its own class's objects and calls its own downstream, where
   * a method on this class would be one load and one call site for every stage
   * (megamorphic, per item, in every stage).
   */
  protected emit: (o: O) => void = () => {};

  /** Link to the downstream stage and to the run. */
  connect(next: (o: O) => void, ctx: StageContext): void {
    this.emit = next;
    this.#ctx = ctx;
  }

  /** The run this stage is part of (after connect). */
  protected get ctx(): StageContext {
    if (!this.#ctx) throw new Error(`stage ${this.name} used before it was connected`);
    return this.#ctx;
  }

  /** Take one item. */
  abstract push(item: I): void;

  /** The stage's counters, read by the exit line, --stats and the metrics. */
  counters(): Counters {
    return {};
  }

  /** Which of the counters say that something was lost or degraded: the exit line names them when not zero. */
  readonly notable: ReadonlySet<string> = new Set();

  /** Downstream is behind (an output writing slower than records come): hold new records back. */
  backlogged(): boolean {
    return false;
  }

  /** Called every few seconds: sweep caches, re-measure clocks. */
  housekeeping(): void {}

  /** After each batch of records: write what is buffered. */
  flush(): void {}

  /** At stop, once nothing new arrives: release whatever is held back. */
  drain(): void {}

  /** After the drain: final output, release resources. */
  close(): void {}

  /** After close: finish writing what is still queued, for at most `ms`. */
  settle(_ms: number): Promise<void> {
    return Promise.resolve();
  }
}
