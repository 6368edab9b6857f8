/**
 * Who holds how much of a bounded table: each share's keys, oldest first, so that
 * a full share gives up its own oldest entry rather than someone else's.
 * @module
 */

/** Keys by share. */
export class Shares {
  #keys = new Map<string, Set<string>>();

  /** Entries `share` holds. */
  size(share: string): number {
    return this.#keys.get(share)?.size ?? 0;
  }

  /** The oldest key `share` holds, if any. */
  oldest(share: string): string | undefined {
    return this.#keys.get(share)?.values().next().value;
  }

  add(share: string, key: string): void {
    let keys = this.#keys.get(share);
    if (!keys) this.#keys.set(share, keys = new Set());
    keys.add(key);
  }

  remove(share: string, key: string): void {
    const keys = this.#keys.get(share);
    keys?.delete(key);
    if (keys?.size === 0) this.#keys.delete(share);
  }
}
