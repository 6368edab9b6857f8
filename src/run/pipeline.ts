/**
 * Stages linked in order, driven as one: items go in at the head, counters come
 * out by stage, and flush, housekeeping, drain and close reach every stage.
 * @module
 */
import type { Counters, Stage, StageContext } from "../stage.ts";

/** The run's ledger: what came in and where each event went. */
export interface Ledger {
  seen: number;
  emitted: number;
  filtered: number;
  /** Dropped events by cause. */
  dropped: Record<string, number>;
}

// deno-lint-ignore no-explicit-any
type AnyStage = Stage<any, any>;

/** A chain of stages. */
export class Pipeline<I> {
  readonly stages: readonly AnyStage[];
  readonly #head: Stage<I, unknown>;

  /** Link `stages` in order; the last one's output goes nowhere. */
  constructor(stages: readonly AnyStage[], ctx: StageContext) {
    if (stages.length === 0) throw new Error("a pipeline needs at least one stage");
    const names = stages.map((s) => s.name);
    if (new Set(names).size !== names.length) throw new Error(`duplicate stage names: ${names.join(", ")}`);
    this.stages = stages;
    this.#head = stages[0];
    stages.forEach((s, i) => {
      const next = stages[i + 1];
      // Bound, not `(o) => next.push(o)`: one arrow for every stage would be one megamorphic call site.
      s.connect(next ? next.push.bind(next) : () => {}, ctx);
    });
  }

  /** Put one item in at the head. */
  push(item: I): void {
    this.#head.push(item);
  }

  /** Every stage's counters, by stage name. */
  counters(): Record<string, Counters> {
    return Object.fromEntries(this.stages.map((s) => [s.name, s.counters()]));
  }

  /** The ledger, summed over the stages' `seen`, `emitted`, `filtered` and `dropped.*` counters. */
  ledger(): Ledger {
    const l: Ledger = { seen: 0, emitted: 0, filtered: 0, dropped: {} };
    for (const s of this.stages) {
      for (const [name, n] of Object.entries(s.counters())) {
        if (name === "seen" || name === "emitted" || name === "filtered") l[name] += n;
        else if (name.startsWith("dropped.")) {
          const cause = name.slice("dropped.".length);
          l.dropped[cause] = (l.dropped[cause] ?? 0) + n;
        }
      }
    }
    return l;
  }

  /** The notable counters that are not zero, as `stage counter` to count, in stage order. */
  notable(): [string, number][] {
    const out: [string, number][] = [];
    for (const s of this.stages) {
      const c = s.counters();
      for (const name of s.notable) if ((c[name] ?? 0) > 0) out.push([`${s.name} ${name}`, c[name]]);
    }
    return out;
  }

  /** Whether a stage asks for new records to be held back. */
  backlogged(): boolean {
    return this.stages.some((s) => s.backlogged());
  }

  /** After a batch: every stage writes what it buffered. */
  flush(): void {
    for (const s of this.stages) s.flush();
  }

  housekeeping(): void {
    for (const s of this.stages) s.housekeeping();
  }

  /** At stop: release what is held, head first, so it flows through the rest. */
  drain(): void {
    for (const s of this.stages) s.drain();
    this.flush();
  }

  close(): void {
    for (const s of this.stages) s.close();
  }

  /** After close: let every stage finish its writes, for at most `ms`. */
  async settle(ms: number): Promise<void> {
    await Promise.all(this.stages.map((s) => s.settle(ms)));
  }
}
