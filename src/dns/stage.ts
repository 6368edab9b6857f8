/**
 * The pipeline's DNS stage, right behind decode: DNS response records teach the
 * cache and go no further; every other record passes.
 * @module
 */
import { blankConnect, type RawConnect, type RawDns, type RawDnsQuery, type RawRecord } from "../capture/decode.ts";
import { type Counters, Stage } from "../stage.ts";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import { DnsCache, sharesOf } from "./cache.ts";
import { Shares } from "./shares.ts";
import { type DnsResponse, parseResponse } from "./parse.ts";

/** Queries waiting for their response at most; one asker's share of them; how long one waits (ns). */
export const MAX_QUERIES = 16_384;
export const QUERY_SHARE = 1024;
const QUERY_NS = 10_000_000_000n;

/**
 * A response as a record of the event stream (`--events dns`): the asking socket's
 * end first; the query it answers gives the task and the latency.
 */
function asEvent(r: RawDns, res: DnsResponse, q: RawDnsQuery): RawConnect {
  return {
    ...blankConnect(),
    event: "dns",
    tsNs: r.tsNs,
    startNs: q.tsNs,
    cgroupId: q.cgroupId,
    // The sending task's start: a pid reused since is not taken for the process that asked.
    procStartNs: q.procStartNs,
    pid: q.pid,
    tid: q.tid,
    uid: q.uid,
    sport: r.dport,
    dport: 53,
    family: r.family,
    status: "answered",
    saddr: r.daddr,
    daddr: r.saddr,
    comm: q.comm,
    cgroup: q.cgroup,
    cgroupParent: q.cgroupParent,
    netnsCookie: r.netnsCookie,
    dns: { query: res.query, qtype: res.qtype, rcode: res.rcode, answers: res.answers },
  };
}

const TCP = 6;

/** The question a query asks, or undefined when it is not a query. */
function questionOf(q: RawDnsQuery): { name: string; qtype: string } | undefined {
  const b = q.data;
  if (b.length < 12 || (b[2] & 0x80) !== 0 || ((b[4] << 8) | b[5]) === 0) return undefined; // QR set, or no question
  try {
    const asked = question.decode(Buffer.from(b.buffer, b.byteOffset, b.byteLength), 12);
    if (typeof asked.name !== "string") return undefined;
    return { name: asked.name.toLowerCase().replace(/\.$/, ""), qtype: String(asked.type) };
  } catch {
    return undefined;
  }
}

// dns-packet's question codec, which its types leave out.
const question = (dnsPacket as unknown as {
  question: { decode(buf: Buffer, offset: number): { name: unknown; type: unknown } };
}).question;

/** A query waiting for its response. */
interface Asked {
  q: RawDnsQuery;
  name: string;
  qtype: string;
  share: string;
}

/** Why a response was not learned from (the `unanswered` counters). */
type Unanswered = "no-query" | "other-question" | "late";

export class DnsStage extends Stage<RawRecord> {
  readonly name = "dns";
  override readonly notable: ReadonlySet<string> = new Set([
    "unanswered.no-query",
    "unanswered.other-question",
    "unanswered.late",
    "queries-evicted",
    "cache-evictions",
    "share-evictions",
    "malformed",
    "cut-short",
  ]);
  readonly cache: DnsCache;
  #responses = 0;
  #malformed = 0;
  #cut = 0;
  #tcp = 0;
  #unanswered: Record<Unanswered, number> = { "no-query": 0, "other-question": 0, late: 0 };
  #queriesEvicted = 0;

  #events: boolean;
  /** Queries by `<netns>|<resolver>|<port>|<id>`, oldest first, bounded. */
  #queries = new Map<string, Asked>();
  /** Each asker's queries waiting (sharesOf's first share). */
  #asking = new Shares();
  #matched = 0;

  /** @param events pass every response on as an event (`--events dns`) */
  constructor(events = false, cache = new DnsCache()) {
    super();
    this.#events = events;
    this.cache = cache;
  }

  push(r: RawRecord): void {
    if (r.kind === "dns_query") {
      this.#remember(r);
      return;
    }
    if (r.kind !== "dns") {
      this.emit(r);
      return;
    }
    const tcp = r.proto === TCP;
    const res = parseResponse(r.data, tcp);
    if (!res) {
      // A response longer than what the kernel copies cannot be parsed: said apart.
      if (r.payloadLen > r.data.length) this.#cut++;
      else this.#malformed++;
      return;
    }
    // Believed only as the answer to a query seen leaving this namespace, from this port, to this resolver.
    const key = `${r.netnsCookie}|${r.saddr}|${r.dport}|${res.id}`;
    const asked = this.#queries.get(key);
    const why: Unanswered | undefined = !asked
      ? "no-query"
      : asked.name !== res.query || asked.qtype !== res.qtype
      ? "other-question"
      : asked.q.tsNs > r.tsNs || r.tsNs - asked.q.tsNs > QUERY_NS
      ? "late"
      : undefined;
    if (why) {
      this.#unanswered[why]++;
      return;
    }
    this.#forget(key);
    this.#matched++;
    this.#responses++;
    if (tcp) this.#tcp++;
    this.cache.learn(r.netnsCookie, res.query, res.addresses, sharesOf(r.netnsCookie, asked!.q.uid));
    if (this.#events) this.emit(asEvent(r, res, asked!.q));
  }

  #remember(q: RawDnsQuery): void {
    const asked = questionOf(q);
    if (!asked) return;
    const key = `${q.netnsCookie}|${q.daddr}|${q.sport}|${q.dnsId}`;
    this.#forget(key);
    const share = sharesOf(q.netnsCookie, q.uid)[0];
    // One asker's flood of queries pushes out its own oldest, never another's.
    if (this.#asking.size(share) >= QUERY_SHARE) {
      this.#forget(this.#asking.oldest(share)!);
      this.#queriesEvicted++;
    }
    if (this.#queries.size >= MAX_QUERIES) {
      this.#forget(this.#queries.keys().next().value!);
      this.#queriesEvicted++;
    }
    this.#queries.set(key, { q, ...asked, share });
    this.#asking.add(share, key);
  }

  #forget(key: string): void {
    const a = this.#queries.get(key);
    if (!a) return;
    this.#queries.delete(key);
    this.#asking.remove(a.share, key);
  }

  override housekeeping(): void {
    this.cache.sweep();
    // Queries never answered (or answered unseen) go after a while. The Map is in
    // arrival order: the newest is last, the stale ones are at the head.
    let newest = 0n;
    for (const a of this.#queries.values()) newest = a.q.tsNs;
    for (const [k, a] of this.#queries) {
      if (a.q.tsNs >= newest - QUERY_NS) break;
      this.#forget(k);
    }
  }

  override counters(): Counters {
    return {
      responses: this.#responses,
      overTcp: this.#tcp,
      malformed: this.#malformed,
      "cut-short": this.#cut,
      "unanswered.no-query": this.#unanswered["no-query"],
      "unanswered.other-question": this.#unanswered["other-question"],
      "unanswered.late": this.#unanswered.late,
      queriesMatched: this.#matched,
      queriesWaiting: this.#queries.size,
      "queries-evicted": this.#queriesEvicted,
      cacheEntries: this.cache.size,
      "cache-evictions": this.cache.evictions,
      "share-evictions": this.cache.shareEvictions,
    };
  }
}
