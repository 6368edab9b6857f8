/**
 * Which name each network namespace resolved each address to, for as long as the
 * answer's TTL (at most a day, plus a short grace: clients connect a moment after
 * the answer, and some keep using an address a little past it).
 *
 * Bounded, and shared fairly: every entry counts against the share of who asked
 * for it (the asking uid in its network namespace; root by namespace alone, as a
 * container's root is one workload) and, for a user other than root, that uid's
 * share across all namespaces (so a user cannot multiply shares with namespaces
 * of its own). A full share gives up its own oldest entry; only a full cache
 * gives up the oldest of all. One user's flood of answers evicts its own names,
 * not another's. Evictions are counted.
 * @module
 */
import type { Learned } from "./parse.ts";
import { Shares } from "./shares.ts";

/** Entries kept at most. */
export const MAX_ENTRIES = 100_000;
/** Entries one share holds at most. */
export const SHARE = 4096;
/** Seconds an entry outlives its TTL. */
export const GRACE_S = 2;
/** The longest TTL believed, in seconds: a day. */
export const MAX_TTL_S = 86_400;

interface Entry {
  name: string;
  /** performance.now() ms after which the entry is gone. */
  until: number;
  /** The shares it counts against. */
  shares: readonly string[];
}

/** Who asked: the shares an answer to them counts against. */
export function sharesOf(netns: bigint, uid: number): string[] {
  return uid === 0 ? [`${netns}`] : [`${netns}|${uid}`, `uid ${uid}`];
}

/** The cache. Keys are `<netns cookie>|<address>`: a Map, never an object. */
export class DnsCache {
  #entries = new Map<string, Entry>();
  #shares = new Shares();
  #max: number;
  #share: number;
  #now: () => number;
  /** Entries given up by a full cache. */
  evictions = 0;
  /** Entries given up by a full share: its owner's own. */
  shareEvictions = 0;
  /** Names were learned with netns 0 (per host). */
  #hostWide = false;
  #graceS: number;

  /**
   * @param graceS how long an entry outlives its TTL: longer with --flows, whose
   *   records are named at the end of an interval the connections were made in
   */
  constructor(max = MAX_ENTRIES, now = () => performance.now(), share = SHARE, graceS = GRACE_S) {
    this.#max = max;
    this.#now = now;
    this.#share = share;
    this.#graceS = graceS;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * `name` resolved to these addresses in netns `netns`, asked for by `shares`
   * (sharesOf); the newest answer wins.
   */
  learn(netns: bigint, name: string, addresses: readonly Learned[], shares = sharesOf(netns, 0)): void {
    const now = this.#now();
    if (netns === 0n) this.#hostWide = true;
    for (const a of addresses) {
      const key = `${netns}|${a.address}`;
      this.#remove(key); // re-inserted last: the newest
      for (const s of shares) {
        if (this.#shares.size(s) >= this.#share) {
          this.#remove(this.#shares.oldest(s)!);
          this.shareEvictions++;
        }
      }
      if (this.#entries.size >= this.#max) {
        this.#remove(this.#entries.keys().next().value!);
        this.evictions++;
      }
      const ttl = Math.min(Math.max(a.ttl, 0), MAX_TTL_S);
      this.#entries.set(key, { name, until: now + (ttl + this.#graceS) * 1000, shares });
      for (const s of shares) this.#shares.add(s, key);
    }
  }

  #remove(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    this.#entries.delete(key);
    for (const s of e.shares) this.#shares.remove(s, key);
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
      this.#remove(key);
      return "";
    }
    return e.name;
  }

  /** Drop what has expired (housekeeping). */
  sweep(): void {
    const now = this.#now();
    for (const [k, e] of this.#entries) if (e.until < now) this.#remove(k);
  }
}
