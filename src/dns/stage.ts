/**
 * The pipeline's DNS stage, right behind decode: DNS response records teach the
 * cache and go no further; every other record passes.
 * @module
 */
import type { RawConnect, RawDns, RawDnsQuery, RawRecord } from "../capture/decode.ts";
import { type Counters, Stage } from "../stage.ts";
import { DnsCache } from "./cache.ts";
import { type DnsResponse, parseResponse } from "./parse.ts";

/** Queries waiting for their response at most, and for how long (ms). */
export const MAX_QUERIES = 8192;
const QUERY_MS = 10_000;

/**
 * A response as a record of the event stream (`--events dns`): the asking socket's
 * end first; the query, when it was seen, gives the task and the latency.
 */
function asEvent(r: RawDns, res: DnsResponse, q: RawDnsQuery | undefined): RawConnect {
  return {
    kind: "connect",
    event: "dns",
    connId: 0n,
    inbound: false,
    existing: false,
    bytesSent: 0,
    bytesReceived: 0,
    retransmits: 0,
    srttUs: 0,
    closedBy: "",
    tsNs: r.tsNs,
    startNs: q && q.tsNs <= r.tsNs ? q.tsNs : r.tsNs,
    cgroupId: q?.cgroupId ?? r.cgroupId,
    procStartNs: 0n,
    pid: q?.pid ?? 0,
    tid: q?.tid ?? 0,
    ppid: 0,
    uid: q?.uid ?? 0,
    gid: 0,
    mntns: 0,
    netns: 0,
    skErr: 0,
    sport: r.dport,
    dport: 53,
    family: r.family,
    status: "answered",
    saddr: r.daddr,
    daddr: r.saddr,
    comm: q?.comm ?? "",
    cgroup: q?.cgroup ?? "",
    cgroupParent: q?.cgroupParent ?? "",
    netnsCookie: r.netnsCookie,
    dns: { query: res.query, qtype: res.qtype, rcode: res.rcode, answers: res.answers },
    ...(q && q.pid !== 0 ? { pidOnly: true as const } : {}),
  };
}

const TCP = 6;

export class DnsStage extends Stage<RawRecord> {
  readonly name = "dns";
  readonly cache: DnsCache;
  #responses = 0;
  #malformed = 0;
  #cut = 0;
  #tcp = 0;

  #events: boolean;
  /** Queries by `<netns>|<port>|<id>`, oldest first, bounded. */
  #queries = new Map<string, RawDnsQuery>();
  #matched = 0;

  /** @param events pass every response on as an event (`--events dns`) */
  constructor(events = false, cache = new DnsCache()) {
    super();
    this.#events = events;
    this.cache = cache;
  }

  push(r: RawRecord): void {
    if (r.kind === "dns_query") {
      if (this.#events) this.#remember(r);
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
    this.#responses++;
    if (tcp) this.#tcp++;
    this.cache.learn(r.netnsCookie, res.query, res.addresses);
    if (!this.#events) return;
    const key = `${r.netnsCookie}|${r.dport}|${res.id}`;
    const q = this.#queries.get(key);
    if (q) {
      this.#queries.delete(key);
      this.#matched++;
    }
    this.emit(asEvent(r, res, q));
  }

  #remember(q: RawDnsQuery): void {
    const key = `${q.netnsCookie}|${q.sport}|${q.dnsId}`;
    this.#queries.delete(key);
    if (this.#queries.size >= MAX_QUERIES) this.#queries.delete(this.#queries.keys().next().value!);
    this.#queries.set(key, q);
  }

  override housekeeping(): void {
    this.cache.sweep();
    // Queries never answered (or answered unseen) go after a while. The Map is in
    // arrival order: the newest is last, the stale ones are at the head.
    let newest = 0n;
    for (const q of this.#queries.values()) newest = q.tsNs;
    const oldest = newest - BigInt(QUERY_MS) * 1_000_000n;
    for (const [k, q] of this.#queries) {
      if (q.tsNs >= oldest) break;
      this.#queries.delete(k);
    }
  }

  override counters(): Counters {
    return {
      responses: this.#responses,
      overTcp: this.#tcp,
      malformed: this.#malformed,
      cutShort: this.#cut,
      queriesMatched: this.#matched,
      cacheEntries: this.cache.size,
      evictions: this.cache.evictions,
    };
  }
}
