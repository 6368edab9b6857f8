/**
 * SIGINT and SIGTERM, listened for from the start of main.ts, not from the start
 * of the run: a stop asked for while the capture loads or the modules evaluate
 * ends the run as soon as it has begun, with the exit line, instead of killing
 * the process half started. A second signal leaves at once (the kernel detaches
 * what is loaded when the process exits). SIGHUP never ends a run: it asks the
 * run to re-read what it reads from files (as daemons do), at once if the run
 * has begun, else as soon as it does.
 * @module
 */

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** The stop signals of one process. */
export class StopSignals {
  #count = 0;
  #onStop: (() => void) | undefined;
  #hups = 0;
  #onReload: (() => void) | undefined;
  readonly #hup = () => {
    if (this.#onReload) this.#onReload();
    else this.#hups++;
  };
  readonly #handler = () => {
    if (++this.#count > 1) Deno.exit(130);
    this.#onStop?.();
  };

  constructor() {
    for (const s of SIGNALS) Deno.addSignalListener(s, this.#handler);
    Deno.addSignalListener("SIGHUP", this.#hup);
  }

  /** Call `reload` on every SIGHUP: at once if one has come already. */
  onReload(reload: () => void): void {
    this.#onReload = reload;
    if (this.#hups > 0) {
      this.#hups = 0;
      reload();
    }
  }

  /** Call `stop` on the first signal: at once if it has come already. */
  onStop(stop: () => void): void {
    this.#onStop = stop;
    if (this.#count > 0) stop();
  }

  /** Stop listening. */
  close(): void {
    for (const s of SIGNALS) Deno.removeSignalListener(s, this.#handler);
    Deno.removeSignalListener("SIGHUP", this.#hup);
    this.#onStop = undefined;
    this.#onReload = undefined;
  }
}
