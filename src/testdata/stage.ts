/**
 * Runs one pipeline stage on its own in a unit test: what it emits is collected,
 * and what it asks of the run is recorded.
 * @module
 */
import type { Stage, StageContext } from "../stage.ts";

/** A stage connected to a recording context. */
export interface Harnessed<O> {
  out: O[];
  logs: string[];
  stops: number[];
  flushes: number;
}

/** Connect `stage` to an array and a context that records stop/log/flush requests. */
export function harness<I, O>(stage: Stage<I, O>): Harnessed<O> {
  const h: Harnessed<O> = { out: [], logs: [], stops: [], flushes: 0 };
  const ctx: StageContext = {
    log: (l) => h.logs.push(l),
    stop: (code = 0) => h.stops.push(code),
    flushSoon: () => h.flushes++,
  };
  stage.connect((o) => h.out.push(o), ctx);
  return h;
}
