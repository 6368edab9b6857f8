/**
 * An OTLP/HTTP logs receiver for tests: requests are decoded with the official
 * OTLP protobuf definitions (OpenTelemetry JS's compiled ones, from npm) or as
 * OTLP JSON, gunzipped when they say so, and kept with their headers. It can be
 * told to answer 503 (with Retry-After) for a while, or anything else.
 * @module
 */
import { LOGS_REQUEST as REQUEST, plainAttributes } from "../../src/testdata/otlp.ts";
import type { OtelValue } from "../../src/fields.ts";

/** One log record as received. */
export interface Received {
  attributes: Record<string, OtelValue>;
  resource: Record<string, OtelValue>;
  scope: { name: string; version: string };
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: number;
  severityText: string;
  body: string;
  eventName: string;
}

/** One request as received. */
export interface ReceivedRequest {
  contentType: string;
  contentEncoding: string;
  headers: Headers;
  records: number;
  /** What the receiver answered. */
  status: number;
}

/** The receiver's answer to a request, given how many came before: a status and headers, or undefined for 200. */
export type Answer = (n: number) => { status: number; headers?: Record<string, string> } | undefined;

/** A receiver on 127.0.0.1, on a port of its own. */
export class OtlpReceiver {
  readonly records: Received[] = [];
  readonly requests: ReceivedRequest[] = [];
  answer: Answer = () => undefined;
  #server: Deno.HttpServer;
  readonly url: string;

  /** `tls`: serve https with this certificate and key (PEM). */
  constructor(tls?: { cert: string; key: string }) {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {}, ...tls },
      (req) => this.#take(req),
    );
    this.url = `${tls ? "https" : "http"}://127.0.0.1:${(this.#server.addr as Deno.NetAddr).port}`;
  }

  async #take(r: Request): Promise<Response> {
    let bytes = new Uint8Array(await r.arrayBuffer());
    const contentEncoding = r.headers.get("content-encoding") ?? "";
    const contentType = r.headers.get("content-type") ?? "";
    const forced = this.answer(this.requests.length);
    const entry: ReceivedRequest = {
      contentType,
      contentEncoding,
      headers: r.headers,
      records: 0,
      status: forced?.status ?? 200,
    };
    this.requests.push(entry);
    if (forced && forced.status !== 200) return new Response("not now", forced);
    if (contentEncoding === "gzip") {
      const s = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      bytes = new Uint8Array(await new Response(s).arrayBuffer());
    }
    // deno-lint-ignore no-explicit-any
    let msg: any;
    if (contentType === "application/json") {
      msg = JSON.parse(new TextDecoder().decode(bytes));
    } else if (contentType === "application/x-protobuf") {
      msg = REQUEST.toObject(REQUEST.decode(bytes), { longs: String, arrays: true });
    } else return new Response("bad content type", { status: 415 });
    for (const rl of msg.resourceLogs ?? []) {
      const resource = plainAttributes(rl.resource?.attributes);
      for (const sl of rl.scopeLogs ?? []) {
        for (const lr of sl.logRecords ?? []) {
          entry.records++;
          this.records.push({
            attributes: plainAttributes(lr.attributes),
            resource,
            scope: { name: sl.scope?.name, version: sl.scope?.version },
            timeUnixNano: String(lr.timeUnixNano),
            observedTimeUnixNano: String(lr.observedTimeUnixNano),
            severityNumber: Number(lr.severityNumber),
            severityText: lr.severityText,
            body: lr.body?.stringValue,
            eventName: lr.eventName,
          });
        }
      }
    }
    return contentType === "application/json"
      ? Response.json({})
      : new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}
