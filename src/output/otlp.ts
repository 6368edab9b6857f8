/**
 * `--output otlp`: every record as an OTLP log record, POSTed over OTLP/HTTP to an
 * OpenTelemetry Collector, as a well-behaved exporter does it.
 *
 * - Records are batched (OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, 512) and a batch goes
 *   out at the latest OTEL_BLRP_SCHEDULE_DELAY (1 s) after its first record; each
 *   batch is encoded at once, and the encoded batches wait in a queue bounded in
 *   records (OTEL_BLRP_MAX_QUEUE_SIZE). A batch the queue cannot hold is dropped
 *   and counted (`export-queue-full`): the pipeline never waits for the network.
 * - One request is in flight at a time. 429, 502, 503, 504 and connection errors
 *   are retried with exponential backoff (with jitter, at most 5 s apart, or what
 *   `Retry-After` says, at most a minute) for as long as the queue holds the batch;
 *   any other answer is final: the batch is dropped and counted (`export-rejected`),
 *   as are the records a collector's partial success says it rejected.
 * - At stop, what is queued is sent for at most a few seconds; what is left is
 *   counted (`export-unsent`).
 * @module
 */
import type { ConnEvent } from "../event.ts";
import type { Counters } from "../stage.ts";
import type { Renderer } from "./renderer.ts";
import type { OtlpConfig } from "./otlp_config.ts";
import { JsonLogBatch, type LogBatch, ProtoLogBatch, type Scope } from "./otlp_encode.ts";

/** Why records were not delivered, as the ledger names the causes. */
export interface ExportDrops {
  /** The queue was full (the collector was away or slow for long). */
  "export-queue-full": number;
  /** The collector answered with a final error (400, 401, 413, ...), or rejected them in a partial success. */
  "export-rejected": number;
  /** Still queued when the run's final flush ran out of time. */
  "export-unsent": number;
}

/** A request's worth of records, encoded. */
interface Queued {
  body: Uint8Array;
  records: number;
  /** Sent already and failed: how many times. */
  attempts: number;
}

/** Backoff: the first retry after this, doubling, at most MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5000;
/** The longest Retry-After honoured. */
const MAX_RETRY_AFTER_MS = 60_000;
/** How long the final flush may take at stop, at most. */
export const STOP_FLUSH_MS = 5000;
/** The start-up probe's wait for the collector. */
const PROBE_MS = 500;

/** What one POST came to. */
type Outcome =
  | { kind: "ok"; rejected: number }
  | { kind: "retry"; afterMs?: number; why: string }
  | { kind: "final"; why: string };

/** The seam tests use instead of the network. */
export type Post = (body: Uint8Array, signal: AbortSignal) => Promise<Response>;

/** Answers the collector is expected to recover from. */
const RETRYABLE = new Set([429, 502, 503, 504]);

/** `Retry-After`: seconds or an HTTP date, as ms from now (bounded), or undefined. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const s = Number(header.trim());
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(header) - now;
  if (!Number.isFinite(ms) || ms < 0) return undefined;
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}

/** The delay before retry number `attempt` (1, 2, ...): doubling from 250 ms, at most 5 s, ±20%. */
export function backoffMs(attempt: number, random = Math.random): number {
  const base = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.min(attempt - 1, 16));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * How many records a successful response says were rejected (OTLP partial success:
 * `rejected_log_records`, field 1 of ExportLogsPartialSuccess, field 1 of the response).
 */
export function rejectedIn(body: Uint8Array, json: boolean): number {
  if (body.length === 0) return 0;
  if (json) {
    try {
      const n = Number(JSON.parse(new TextDecoder().decode(body))?.partialSuccess?.rejectedLogRecords ?? 0);
      return Number.isSafeInteger(n) && n > 0 ? n : 0;
    } catch {
      return 0;
    }
  }
  // A tiny protobuf walk: ExportLogsServiceResponse { partial_success = 1 { rejected_log_records = 1 } }.
  const field = (b: Uint8Array, want: number): Uint8Array | number | undefined => {
    let p = 0;
    const varint = () => {
      let n = 0;
      for (let mul = 1; p < b.length; mul *= 128) {
        const c = b[p++];
        n += (c & 0x7f) * mul;
        if (c < 0x80) return n;
      }
      return n;
    };
    while (p < b.length) {
      const tag = varint();
      const [no, type] = [Math.floor(tag / 8), tag & 7];
      if (type === 0) {
        const v = varint();
        if (no === want) return v;
      } else if (type === 2) {
        const len = varint();
        if (no === want) return b.subarray(p, p + len);
        p += len;
      } else if (type === 1) p += 8;
      else if (type === 5) p += 4;
      else return undefined;
    }
    return undefined;
  };
  const partial = field(body, 1);
  if (!(partial instanceof Uint8Array)) return 0;
  const n = field(partial, 1);
  return typeof n === "number" ? n : 0;
}

/** A response body is read up to this much (a partial success, an error's text); the rest is not read. */
const MAX_ANSWER_BYTES = 64 << 10;

/** The response's body, at most MAX_ANSWER_BYTES of it. */
async function boundedBody(res: Response): Promise<Uint8Array> {
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    while (n < MAX_ANSWER_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      n += value.length;
    }
  } finally {
    if (n >= MAX_ANSWER_BYTES) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  const out = new Uint8Array(Math.min(n, MAX_ANSWER_BYTES));
  let off = 0;
  for (const p of parts) {
    const take = Math.min(p.length, out.length - off);
    out.set(p.subarray(0, take), off);
    off += take;
  }
  return out;
}

/** gzip, off the main thread's synchronous path. */
async function gzip(body: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([body as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The exporter as an output. */
export class OtlpRenderer implements Renderer {
  readonly #c: OtlpConfig;
  readonly #post: Post;
  readonly #log: (line: string) => void;
  readonly #batch: LogBatch;
  #queue: Queued[] = [];
  /** Records in the queue (batched ones not counted). */
  #queued = 0;
  #batchTimer: ReturnType<typeof setTimeout> | undefined;
  #sending = false;
  #stopping = false;
  /** Wakes a backoff sleep early (at stop). */
  #wake: (() => void) | undefined;
  #inFlight: AbortController | undefined;
  #drops: ExportDrops = { "export-queue-full": 0, "export-rejected": 0, "export-unsent": 0 };
  #sent = 0;
  #requests = 0;
  #retries = 0;
  /** Whether the last attempt failed, and why (said once per outage). */
  #down = "";
  /** Wall clock once per batch of events: the observed time of its records. */
  #now = 0n;

  readonly #clock: () => bigint;

  /** `clock`: wall-clock ns now (the run's CLOCK_REALTIME, the clock the events' times are on). */
  constructor(
    c: OtlpConfig,
    post: Post,
    log: (line: string) => void,
    scope: Scope,
    clock = () => BigInt(Date.now()) * 1_000_000n,
  ) {
    this.#clock = clock;
    this.#c = c;
    this.#post = post;
    this.#log = log;
    this.#batch = c.protocol === "http/json"
      ? new JsonLogBatch(c.resource, scope)
      : new ProtoLogBatch(c.resource, scope);
  }

  event(e: ConnEvent): void {
    if (this.#now === 0n) this.#now = this.#clock();
    this.#batch.add(e, this.#now);
    if (this.#batch.count >= this.#c.maxBatch) this.#seal();
    else if (this.#batchTimer === undefined) {
      this.#batchTimer = setTimeout(() => this.#seal(), this.#c.batchDelayMs);
    }
  }

  flush(): void {
    this.#now = 0n;
  }

  /** The batch into the queue, or dropped when the queue cannot hold it; then send. */
  #seal(): void {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    const records = this.#batch.count;
    if (records === 0) return;
    const body = this.#batch.take();
    if (this.#queued + records > this.#c.maxQueue) {
      this.#drops["export-queue-full"] += records;
      this.#batch.recycle(body);
    } else {
      this.#queue.push({ body, records, attempts: 0 });
      this.#queued += records;
    }
    this.#pump();
  }

  /** Send the queue's head until the queue is empty; one request at a time. */
  async #pump(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      while (this.#queue.length > 0) {
        const item = this.#queue[0];
        const outcome = await this.#send(item);
        if (outcome.kind === "retry") {
          item.attempts++;
          this.#retries++;
          this.#outage(outcome.why);
          if (this.#finalDue()) break;
          await this.#sleep(outcome.afterMs ?? backoffMs(item.attempts));
          if (this.#finalDue()) break;
          continue;
        }
        this.#queue.shift();
        this.#queued -= item.records;
        this.#batch.recycle(item.body);
        if (outcome.kind === "final") {
          this.#drops["export-rejected"] += item.records;
          // Said once until it takes records again: a collector refusing every batch must not flood stderr.
          if (this.#down !== outcome.why) {
            this.#down = outcome.why;
            this.#log(
              `lightmon: the collector at ${this.#c.url} refuses records (${outcome.why}); they are dropped and counted (export-rejected)`,
            );
          }
        } else {
          this.#sent += item.records - outcome.rejected;
          this.#drops["export-rejected"] += outcome.rejected;
          if (this.#down) this.#log(`lightmon: the collector at ${this.#c.url} takes records again`);
          this.#down = "";
        }
      }
    } finally {
      this.#sending = false;
    }
  }

  #outage(why: string): void {
    if (this.#down === why) return;
    this.#down = why;
    this.#log(
      `lightmon: cannot export to ${this.#c.url} (${why}); retrying, ${this.#queued} records queued (at most ${this.#c.maxQueue})`,
    );
  }

  #finalDeadline = Infinity;
  #finalDue(): boolean {
    return this.#stopping && performance.now() >= this.#finalDeadline;
  }

  #sleep(ms: number): Promise<void> {
    const wait = this.#stopping ? Math.min(ms, Math.max(0, this.#finalDeadline - performance.now()), 250) : ms;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, wait);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  async #send(item: Queued, timeoutMs = this.#c.timeoutMs): Promise<Outcome> {
    const ac = new AbortController();
    this.#inFlight = ac;
    const timer = setTimeout(() => ac.abort(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    try {
      const body = this.#c.gzip ? await gzip(item.body) : item.body;
      if (item.records > 0) this.#requests++;
      const res = await this.#post(body, ac.signal);
      const answer = await boundedBody(res);
      if (res.ok) {
        return { kind: "ok", rejected: Math.min(item.records, rejectedIn(answer, this.#c.protocol === "http/json")) };
      }
      const why = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
      if (RETRYABLE.has(res.status)) {
        return { kind: "retry", afterMs: retryAfterMs(res.headers.get("retry-after")), why };
      }
      return { kind: "final", why };
    } catch (e) {
      // Refused, reset, unreachable, timed out, TLS: the collector may come back.
      const cause = (e as { cause?: unknown })?.cause;
      const msg = ac.signal.aborted && ac.signal.reason instanceof Error
        ? ac.signal.reason.message
        : cause instanceof Error
        ? cause.message
        : e instanceof Error
        ? e.message
        : String(e);
      // fetch's message nests its causes (`error sending request for url (...): client error (Connect):
      // tcp connect error: Connection refused (os error 111)`): the last is the one that says it.
      const first = msg.split("\n")[0];
      return { kind: "retry", why: first.slice(first.lastIndexOf(": ") + 1).trim() || first };
    } finally {
      clearTimeout(timer);
      this.#inFlight = undefined;
    }
  }

  /** The start-up probe: an empty request. Resolves with why the collector did not take it, or "". */
  async probe(): Promise<string> {
    const empty = this.#c.protocol === "http/json" ? new TextEncoder().encode("{}") : new Uint8Array(0);
    const outcome = await this.#send({ body: empty, records: 0, attempts: 0 }, Math.min(PROBE_MS, this.#c.timeoutMs));
    return outcome.kind === "ok" ? "" : outcome.why;
  }

  close(): void {
    this.#seal();
  }

  async settle(ms: number): Promise<void> {
    this.#stopping = true;
    this.#finalDeadline = performance.now() + Math.max(ms, STOP_FLUSH_MS);
    this.#wake?.();
    while (this.#queue.length > 0 && performance.now() < this.#finalDeadline) {
      if (!this.#sending) void this.#pump();
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.#queue.length > 0) {
      this.#inFlight?.abort(new Error("lightmon is stopping"));
      this.#wake?.();
      const left = this.#queue.reduce((n, q) => n + q.records, 0);
      this.#drops["export-unsent"] += left;
      this.#queue = [];
      this.#queued = 0;
      this.#log(`lightmon: ${left} records not exported: the collector at ${this.#c.url} did not take them in time`);
    }
  }

  drops(): Readonly<Record<string, number>> {
    return this.#drops as unknown as Record<string, number>;
  }

  /** The exporter's own counters (metrics and --stats): records sent, requests, retries, queued. */
  counters(): Counters {
    return {
      "export.sent": this.#sent,
      "export.requests": this.#requests,
      "export.retries": this.#retries,
      "export.queued": this.#queued + this.#batch.count,
    };
  }

  readonly notable: ReadonlySet<string> = new Set(["export.retries"]);

  /** Never: the network does not hold the pipeline back; the queue's bound does. */
  backlogged(): boolean {
    return false;
  }

  readonly closed = false;
}

/** The POST of a config: fetch with its headers, content type and (for https) CA and client certificate. */
export function httpPost(c: OtlpConfig, client?: Deno.HttpClient): Post {
  const headers: Record<string, string> = {
    ...c.headers,
    "content-type": c.protocol === "http/json" ? "application/json" : "application/x-protobuf",
    "user-agent": `lightmon/${c.resource["service.version"] ?? ""}`,
  };
  if (c.gzip) headers["content-encoding"] = "gzip";
  return (body, signal) =>
    fetch(c.url, { method: "POST", headers, body: body as BodyInit, signal, ...(client ? { client } : {}) });
}
