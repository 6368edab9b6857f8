/**
 * `--count N`: the first N events go on, then the run is asked to stop; events
 * that still arrive while it stops are dropped and counted.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";

/** The count limit stage. */
export class CountLimit extends Stage<ConnEvent> {
  readonly name = "count";
  #limit: number;
  #passed = 0;
  #past = 0;

  constructor(limit: number) {
    super();
    this.#limit = limit;
  }

  push(e: ConnEvent): void {
    if (this.#passed >= this.#limit) {
      this.#past++;
      return;
    }
    this.emit(e);
    if (++this.#passed === this.#limit) this.ctx.stop(0);
  }

  override counters(): Counters {
    return { "dropped.past-count": this.#past };
  }
}
