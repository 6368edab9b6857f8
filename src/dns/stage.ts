/**
 * The pipeline's DNS stage, right behind decode: DNS response records teach the
 * cache and go no further; every other record passes.
 * @module
 */
import type { RawConnect, RawDns, RawRecord } from "../capture/decode.ts";
import { type Counters, Stage } from "../stage.ts";
import { DnsCache } from "./cache.ts";
import { type DnsResponse, parseResponse } from "./parse.ts";

/** A response as a record of the event stream (`--events dns`): the asking socket's end first. */
function asEvent(r: RawDns, res: DnsResponse): RawConnect {
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
    startNs: r.tsNs,
    cgroupId: r.cgroupId,
    procStartNs: 0n,
    pid: 0,
    tid: 0,
    ppid: 0,
    uid: 0,
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
    comm: "",
    cgroup: "",
    cgroupParent: "",
    netnsCookie: r.netnsCookie,
    dns: { query: res.query, qtype: res.qtype, rcode: res.rcode, answers: res.answers },
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

  /** @param events pass every response on as an event (`--events dns`) */
  constructor(events = false, cache = new DnsCache()) {
    super();
    this.#events = events;
    this.cache = cache;
  }

  push(r: RawRecord): void {
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
    if (this.#events) this.emit(asEvent(r, res));
  }

  override housekeeping(): void {
    this.cache.sweep();
  }

  override counters(): Counters {
    return {
      responses: this.#responses,
      overTcp: this.#tcp,
      malformed: this.#malformed,
      cutShort: this.#cut,
      cacheEntries: this.cache.size,
      evictions: this.cache.evictions,
    };
  }
}
