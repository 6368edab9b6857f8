/**
 * Holds events whose container is not named yet for a bounded time, in order.
 *
 * A container that starts, connects and exits within a second is named by the
 * runtime's create event, which can reach us a little after the connection does.
 * Events wait at most `waitMs` for it; events behind a waiting one wait with it so
 * the output keeps the kernel's order. Nothing else ever blocks the stream.
 * @module
 */
import type { ConnEvent } from "../event.ts";

interface Held {
  e: ConnEvent;
  deadline: number;
}

/** The ordered hold-back queue. */
export class Holdback {
  #queue: Held[] = [];
  #waitMs: number;
  #ready: (e: ConnEvent) => boolean;
  #release: (e: ConnEvent) => void;
  #now: () => number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #onTimer: () => void;

  /**
   * @param ready whether an event's metadata is complete (or not worth waiting for)
   * @param release takes each event when it leaves, in order
   * @param onTimer called after a timer released events (to flush output)
   */
  constructor(
    waitMs: number,
    ready: (e: ConnEvent) => boolean,
    release: (e: ConnEvent) => void,
    onTimer: () => void,
    now = () => performance.now(),
  ) {
    this.#waitMs = waitMs;
    this.#ready = ready;
    this.#release = release;
    this.#onTimer = onTimer;
    this.#now = now;
  }

  /** Events waiting. */
  get size(): number {
    return this.#queue.length;
  }

  /** Take an event: out at once if nothing waits and it is ready. */
  push(e: ConnEvent): void {
    if (this.#queue.length === 0 && (this.#waitMs <= 0 || this.#ready(e))) {
      this.#release(e);
      return;
    }
    this.#queue.push({ e, deadline: this.#now() + this.#waitMs });
    this.pump();
  }

  /** Release from the head what is ready or has waited long enough. */
  pump(): void {
    const now = this.#now();
    let n = 0;
    while (n < this.#queue.length) {
      const h = this.#queue[n];
      if (h.deadline > now && !this.#ready(h.e)) break;
      this.#release(h.e);
      n++;
    }
    if (n > 0) this.#queue.splice(0, n);
    this.#arm();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#queue.length === 0) return;
    const delay = Math.max(0, this.#queue[0].deadline - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.pump();
      this.#onTimer();
    }, delay + 1);
  }

  /** Release everything now (at exit). */
  drain(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const h of this.#queue) this.#release(h.e);
    this.#queue = [];
  }
}
