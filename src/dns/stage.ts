/**
 * The pipeline's DNS stage, right behind decode: DNS response records teach the
 * cache and go no further; every other record passes.
 * @module
 */
import type { RawRecord } from "../capture/decode.ts";
import { type Counters, Stage } from "../stage.ts";
import { DnsCache } from "./cache.ts";
import { parseResponse } from "./parse.ts";

const TCP = 6;

export class DnsStage extends Stage<RawRecord> {
  readonly name = "dns";
  readonly cache: DnsCache;
  #responses = 0;
  #malformed = 0;
  #cut = 0;
  #tcp = 0;

  constructor(cache = new DnsCache()) {
    super();
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
