/**
 * Which name each network namespace resolved each address to, for as long as the
 * answer's TTL (plus a short grace: clients connect a moment after the answer,
 * and some keep using an address a little past it). Bounded: the entry learned
 * or refreshed longest ago goes first, and is counted.
 * @module
 */
import type { Learned } from "./parse.ts";

/** Entries kept at most. */
export const MAX_ENTRIES = 100_000;
/** Seconds an entry outlives its TTL. */
export const GRACE_S = 2;

interface Entry {
  name: string;
  /** performance.now() ms after which the entry is gone. */
  until: number;
}

/** The cache. Keys are `<netns cookie>|<address>`: a Map, never an object. */
export class DnsCache {
  #entries = new Map<string, Entry>();
  #max: number;
  #now: () => number;
  evictions = 0;
  /** Names were learned with netns 0 (per host). */
  #hostWide = false;

  constructor(max = MAX_ENTRIES, now = () => performance.now()) {
    this.#max = max;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** `name` resolved to these addresses in netns `netns`; the newest answer wins. */
  learn(netns: bigint, name: string, addresses: readonly Learned[]): void {
    const now = this.#now();
    if (netns === 0n) this.#hostWide = true;
    for (const a of addresses) {
      const key = `${netns}|${a.address}`;
      this.#entries.delete(key); // re-inserted last: the newest
      if (this.#entries.size >= this.#max) {
        const oldest = this.#entries.keys().next().value!;
        this.#entries.delete(oldest);
        this.evictions++;
      }
      this.#entries.set(key, { name, until: now + (a.ttl + GRACE_S) * 1000 });
    }
  }

  /**
   * The name netns `netns` last resolved to `address`, or "" (none, or expired).
   * Names learned with netns 0 (a kernel that cannot tell) are every netns's.
   */
  lookup(netns: bigint, address: string): string {
    if (this.#entries.size === 0) return "";
    return this.#get(`${netns}|${address}`) || (this.#hostWide ? this.#get(`0|${address}`) : "");
  }

  #get(key: string): string {
    const e = this.#entries.get(key);
    if (!e) return "";
    if (e.until < this.#now()) {
      this.#entries.delete(key);
      return "";
    }
    return e.name;
  }

  /** Drop what has expired (housekeeping). */
  sweep(): void {
    const now = this.#now();
    for (const [k, e] of this.#entries) if (e.until < now) this.#entries.delete(k);
  }
}
