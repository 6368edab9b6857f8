/**
 * Which local container or pod held an address when: the remote end of a
 * connection named by who was at that address at the connection's time.
 *
 * Only a runtime names an address (Docker's API, the CNI plugin's reservations on
 * this node), by a claim that holds from when the runtime gave it out to when it
 * took it back. A record is named by the claim that held at its own time, so a
 * late record of a stopped container keeps its name and an address reused by a
 * new container names the new one, never the old. Two claims holding at once (two
 * runtimes, overlapping networks) name nobody: a name is said only when one owner
 * is certain. Bounded: addresses, claims per address, and ended claims' lifetime.
 * @module
 */
import ipaddr from "ipaddr.js";
import type { PeerName } from "../event.ts";

/** Addresses remembered at most (a /16 of containers); past it the longest-known one is forgotten. */
export const MAX_ADDRESSES = 65_536;
/** Claims kept per address: the live one and the last few ended ones (late records of a stopped container). */
export const MAX_CLAIMS = 4;
/** An ended claim is kept this long, for records still on their way (the hold-back, a flow's interval). */
export const KEEP_ENDED_MS = 5 * 60_000;

interface Claim {
  owner: string;
  peer: PeerName;
  /** Wall-clock ms: from, and until (Infinity while it holds). */
  since: number;
  until: number;
}

/**
 * An address as the decoder writes it: IPv4 dotted, IPv6 in RFC 5952's short form,
 * an IPv4-mapped IPv6 address as its IPv4 one; "" when it is not an address.
 */
export function canonicalAddress(text: string): string {
  if (!ipaddr.isValid(text)) return "";
  const a = ipaddr.parse(text);
  if (a.kind() === "ipv6" && (a as ipaddr.IPv6).isIPv4MappedAddress()) {
    return (a as ipaddr.IPv6).toIPv4Address().toString();
  }
  return a.toString();
}

/** The address book of this host's workloads. */
export class PeerAddresses {
  #claims = new Map<string, Claim[]>();
  /** Each owner's addresses with a claim that still holds. */
  #owned = new Map<string, Set<string>>();
  #forgotten = 0;

  /** Addresses known. */
  get size(): number {
    return this.#claims.size;
  }

  /** Addresses forgotten for want of room (MAX_ADDRESSES). */
  get forgotten(): number {
    return this.#forgotten;
  }

  /**
   * `owner` (a container on one network, a CNI reservation) holds `address` from
   * `sinceMs`. The same owner claiming it again updates the name and keeps the time.
   */
  claim(address: string, owner: string, peer: PeerName, sinceMs: number): void {
    const a = canonicalAddress(address);
    if (a === "") return;
    let list = this.#claims.get(a);
    const live = list?.find((c) => c.owner === owner && c.until === Infinity);
    if (live) {
      live.peer = peer;
      return;
    }
    if (!list) {
      if (this.#claims.size >= MAX_ADDRESSES) this.#forget(this.#claims.keys().next().value!);
      this.#claims.set(a, list = []);
    }
    list.push({ owner, peer, since: sinceMs, until: Infinity });
    // The oldest ended claims go first; live ones stay (several live is a conflict to see, not to hide).
    while (list.length > MAX_CLAIMS) {
      const i = list.findIndex((c) => c.until !== Infinity);
      list.splice(i < 0 ? 0 : i, 1);
    }
    let mine = this.#owned.get(owner);
    if (!mine) this.#owned.set(owner, mine = new Set());
    mine.add(a);
  }

  /** `owner` gave up every address it held (or only `address`) at `atMs`. */
  release(owner: string, atMs: number, address?: string): void {
    const mine = this.#owned.get(owner);
    if (!mine) return;
    const which = address === undefined ? [...mine] : [canonicalAddress(address)];
    for (const a of which) {
      if (!mine.delete(a)) continue;
      for (const c of this.#claims.get(a) ?? []) {
        if (c.owner === owner && c.until === Infinity) c.until = Math.max(atMs, c.since);
      }
    }
    if (mine.size === 0) this.#owned.delete(owner);
  }

  /** The addresses `owner` holds now. */
  holding(owner: string): ReadonlySet<string> {
    return this.#owned.get(owner) ?? new Set();
  }

  /**
   * Who held `address` at wall-clock `wallNs`: the one claim that held then, or
   * undefined (nobody, or more than one). A Map lookup for an address no workload has.
   */
  lookup(address: string, wallNs: bigint): PeerName | undefined {
    const list = this.#claims.get(address);
    if (list === undefined) return undefined;
    const t = Number(wallNs) / 1e6;
    let found: PeerName | undefined;
    for (const c of list) {
      if (c.since > t || t >= c.until) continue;
      if (found !== undefined && found.containerId !== c.peer.containerId) return undefined;
      found = c.peer;
    }
    return found;
  }

  /** Forget claims that ended more than KEEP_ENDED_MS before `nowMs`. */
  expire(nowMs: number): void {
    for (const [a, list] of this.#claims) {
      const kept = list.filter((c) => nowMs - c.until < KEEP_ENDED_MS);
      if (kept.length === 0) this.#claims.delete(a);
      else if (kept.length !== list.length) this.#claims.set(a, kept);
    }
  }

  #forget(a: string): void {
    for (const c of this.#claims.get(a) ?? []) this.#owned.get(c.owner)?.delete(a);
    this.#claims.delete(a);
    this.#forgotten++;
  }
}
