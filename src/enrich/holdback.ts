/**
 * Holds events whose container is not named yet for a bounded time, in order.
 *
 * A container that starts, connects and exits within a second is named by the
 * runtime's create event, which can reach us a little after the connection does.
 * Events wait at most `waitMs` for it; events behind a waiting one wait with it so
 * the output keeps the kernel's order. Nothing else ever blocks the stream.
 * @module
 */
import type { ConnEvent, PeerName } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
import { type ContainerMeta, fillContainer } from "./enricher.ts";

/** What the hold-back asks of the container sources. */
export interface ContainerLookup {
  /** Known metadata, without waiting. */
  get(id: string): ContainerMeta | undefined;
  /** Whether metadata for `id` may still arrive (a runtime was asked and will answer). */
  expect(id: string, runtime: string): boolean;
  /** Whether a workload's addresses are being asked for: an unnamed remote end may be named soon. */
  peersExpected?(): boolean;
  /** Who held an address at a time (a remote end named after the record was made). */
  peer?(address: string, wallNs: bigint): PeerName | undefined;
}

interface Held {
  e: ConnEvent;
  deadline: number;
}

/** The ordered hold-back stage. */
export class Holdback extends Stage<ConnEvent> {
  readonly name = "holdback";
  override readonly notable: ReadonlySet<string> = new Set(["timedOut"]);
  #queue: Held[] = [];
  #waitMs: number;
  #containers: ContainerLookup;
  #now: () => number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #held = 0;
  #timedOut = 0;
  #unnamed = 0;

  constructor(waitMs: number, containers: ContainerLookup, now = () => performance.now()) {
    super();
    this.#waitMs = waitMs;
    this.#containers = containers;
    this.#now = now;
  }

  /** Events waiting. */
  get size(): number {
    return this.#queue.length;
  }

  /** Whether an event's metadata is complete, or not worth waiting for: its own container, then its peer's. */
  #ready(e: ConnEvent): boolean {
    return (!e.containerId || e.container !== "" || this.#containers.get(e.containerId) !== undefined ||
      !this.#containers.expect(e.containerId, e.containerRuntime)) &&
      (e.peer !== undefined || e.event === "dns" || this.#containers.peersExpected?.() !== true);
  }

  /** Out it goes, with whatever metadata arrived while it waited. */
  #release(e: ConnEvent, waited: boolean): void {
    if (e.containerId && !e.container) {
      fillContainer(e, this.#containers.get(e.containerId));
      if (!e.container) this.#unnamed++;
    }
    // An address claimed while it waited names its remote end as of the record's own time.
    if (waited && e.peer === undefined && e.event !== "dns" && e.daddr !== "") {
      e.peer = this.#containers.peer?.(e.daddr, e.wallNs);
    }
    this.emit(e);
  }

  /** Take an event: out at once if nothing waits and it is ready. */
  push(e: ConnEvent): void {
    if (this.#queue.length === 0 && (this.#waitMs <= 0 || this.#ready(e))) {
      this.#release(e, false);
      return;
    }
    this.#held++;
    this.#queue.push({ e, deadline: this.#now() + this.#waitMs });
    this.pump();
  }

  /** Container metadata arrived: release what it completes. */
  metadataArrived(): void {
    if (this.#queue.length === 0) return;
    this.pump();
    this.ctx.flushSoon();
  }

  /** Release from the head what is ready or has waited long enough. */
  pump(): void {
    const now = this.#now();
    let n = 0;
    while (n < this.#queue.length) {
      const h = this.#queue[n];
      if (h.deadline > now && !this.#ready(h.e)) break;
      if (h.deadline <= now) this.#timedOut++;
      this.#release(h.e, true);
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
      this.ctx.flushSoon();
    }, delay + 1);
  }

  /** Release everything now (at stop). */
  override drain(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const queue = this.#queue;
    this.#queue = [];
    for (const h of queue) this.#release(h.e, true);
  }

  override counters(): Counters {
    return { waiting: this.#queue.length, held: this.#held, timedOut: this.#timedOut, unnamed: this.#unnamed };
  }
}
