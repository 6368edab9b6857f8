/**
 * SIGINT and SIGTERM, listened for from the start of main.ts, not from the start
 * of the run: a stop asked for while the capture loads or the modules evaluate
 * ends the run as soon as it has begun, with the exit line, instead of killing
 * the process half started. A second signal leaves at once (the kernel detaches
 * what is loaded when the process exits).
 * @module
 */

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** The stop signals of one process. */
export class StopSignals {
  #count = 0;
  #onStop: (() => void) | undefined;
  readonly #handler = () => {
    if (++this.#count > 1) Deno.exit(130);
    this.#onStop?.();
  };

  constructor() {
    for (const s of SIGNALS) Deno.addSignalListener(s, this.#handler);
  }

  /** Call `stop` on the first signal: at once if it has come already. */
  onStop(stop: () => void): void {
    this.#onStop = stop;
    if (this.#count > 0) stop();
  }

  /** Stop listening. */
  close(): void {
    for (const s of SIGNALS) Deno.removeSignalListener(s, this.#handler);
    this.#onStop = undefined;
  }
}
