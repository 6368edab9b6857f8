/**
 * Records as OTLP log records: an ExportLogsServiceRequest per batch, in protobuf
 * (`http/protobuf`) or in OTLP's JSON (`http/json`).
 *
 * Each record's attributes are the registry's OTLP fields (fields.ts): semantic-
 * convention names where OpenTelemetry has them, `lightmon.*` otherwise; an empty
 * string or list is no attribute. The log record's time is the event's; its
 * observed time is when lightmon wrote it; `eventName` is `lightmon.<event>`; the
 * body says what happened in two words (`connect established`); a record a
 * baseline does not cover is WARN, every other INFO.
 *
 * JSON goes through the OpenTelemetry transformer's serializer. Protobuf is written
 * here: the transformer's serializer took 7.9 µs a record (it measures every
 * message before writing it), more than the rest of lightmon per record. This
 * writer, as the JSON writer does, writes bytes straight into one reused buffer
 * and encodes a process's or a container's attributes once while they stay the
 * same (the tests decode its output with the official protobuf definitions).
 * @module
 */
import { JsonLogsSerializer } from "@opentelemetry/otlp-transformer";
import type { ConnEvent } from "../event.ts";
import {
  BIG,
  BOOL,
  type Field,
  NUMBER,
  OTEL_FIELDS,
  type OtelField,
  type OtelValue,
  statusCell,
  STRING,
  type Value,
  WORD,
} from "../fields.ts";
import { JsonBytes } from "./json.ts";

/** OpenTelemetry's severity numbers. */
const INFO = 9;
const WARN = 13;

/** The instrumentation scope: lightmon itself. */
export interface Scope {
  name: string;
  version: string;
}

/** The severity of a record: WARN for what a baseline does not cover. */
export const severityOf = (e: ConnEvent): number => (e.novel ? WARN : INFO);
/** The body: the event and its status, as the table's status column says it. */
export const bodyOf = (e: ConnEvent): string => `${e.event} ${statusCell(e)}`;
/** The OpenTelemetry event name. */
export const eventNameOf = (e: ConnEvent): string => `lightmon.${e.event}`;

/** A string as valid UTF-8 will carry it: a lone surrogate (from a JSON escape) would void a whole request. */
const wellFormed = (s: string) => (s.isWellFormed() ? s : s.toWellFormed());

/** An OTLP value that is no attribute: an empty string or list. */
const isEmpty = (v: OtelValue) => v === "" || (Array.isArray(v) && v.length === 0);

/** The attribute's value as it is sent: strings well formed. */
function clean(v: OtelValue): OtelValue {
  if (typeof v === "string") return wellFormed(v);
  if (Array.isArray(v)) return v.map((s: string) => wellFormed(s));
  return v;
}

/** An event's attributes, by name, in registry order (the JSON path, and what tests compare against). */
export function otelAttributes(e: ConnEvent): Record<string, OtelValue> {
  const out: Record<string, OtelValue> = {};
  for (const f of OTEL_FIELDS) {
    if (f.field.when && !f.field.when(e)) continue;
    const v = f.get(e);
    if (!isEmpty(v)) out[f.key] = clean(v);
  }
  return out;
}

// ---- protobuf, by hand over JsonBytes' buffer -------------------------------------

const UTF8 = new TextEncoder();

/** Bytes of a varint. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function varint(w: JsonBytes, n: number): void {
  w.ensure(10);
  const buf = w.buf;
  let p = w.pos;
  while (n >= 128) {
    buf[p++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[p++] = n;
  w.pos = p;
}

/** A length-delimited field: tag, length, bytes. */
function delimited(w: JsonBytes, tag: number, bytes: Uint8Array): void {
  w.ensure(1);
  w.buf[w.pos++] = tag;
  varint(w, bytes.length);
  w.bytes(bytes);
}

const scratch = new JsonBytes();

/** What `write` puts in a scratch buffer, as its own bytes. */
function encoded(write: (w: JsonBytes) => void): Uint8Array {
  const w = new JsonBytes(64);
  write(w);
  return w.buf.slice(0, w.pos);
}

/** An AnyValue message. */
function anyValue(v: OtelValue): Uint8Array {
  return encoded((w) => {
    if (typeof v === "string") delimited(w, 0x0a, UTF8.encode(v));
    else if (typeof v === "boolean") {
      w.ensure(2);
      w.buf[w.pos++] = 0x10;
      w.buf[w.pos++] = v ? 1 : 0;
    } else if (typeof v === "number") {
      if (Number.isSafeInteger(v) && v >= 0) {
        w.ensure(1);
        w.buf[w.pos++] = 0x18;
        varint(w, v);
      } else {
        w.ensure(9);
        w.buf[w.pos++] = 0x21;
        new DataView(w.buf.buffer, w.buf.byteOffset).setFloat64(w.pos, v, true);
        w.pos += 8;
      }
    } else if (Array.isArray(v)) {
      // ArrayValue: repeated AnyValue values = 1.
      delimited(w, 0x2a, encoded((a) => v.forEach((s: string) => delimited(a, 0x0a, anyValue(s)))));
    } else {
      // KeyValueList: repeated KeyValue values = 1.
      const map = v as Readonly<Record<string, number>>;
      delimited(w, 0x32, encoded((l) => Object.keys(map).forEach((k) => delimited(l, 0x0a, keyValue(k, map[k])))));
    }
  });
}

/** A KeyValue message. */
function keyValue(key: string, v: OtelValue): Uint8Array {
  return encoded((w) => {
    delimited(w, 0x0a, UTF8.encode(key));
    delimited(w, 0x12, anyValue(v));
  });
}

/** An attribute as it sits in a LogRecord or a Resource: field `tag` (6 or 1), its KeyValue. */
function attribute(tag: number, key: string, v: OtelValue): Uint8Array {
  return encoded((w) => delimited(w, tag, keyValue(key, v)));
}

/** A LogRecord's attribute (field 6), or nothing for an empty value. */
const recordAttribute = (
  key: string,
  v: OtelValue,
) => (isEmpty(v) ? new Uint8Array(0) : attribute(0x32, key, clean(v)));

const MAX_CACHED = 4096;

/** Attribute bytes of recurring values (addresses, words, names), bounded. */
class AttributeCache<K> {
  #map = new Map<K, Uint8Array>();
  get(k: K, make: (k: K) => Uint8Array): Uint8Array {
    let b = this.#map.get(k);
    if (b === undefined) {
      if (this.#map.size >= MAX_CACHED) this.#map.clear();
      b = make(k);
      this.#map.set(k, b);
    }
    return b;
  }
}

type Writer = (w: JsonBytes, e: ConnEvent) => void;

/**
 * A record attribute's bytes (LogRecord.attributes, field 6) up to its value's payload:
 * `0x32 len 0x0a len KEY 0x12 len TAG`, then `varint(length)` when the value is
 * length-delimited. `payload` is the bytes that follow: a varint's, or a string's.
 */
function attributeHead(key: Uint8Array, tag: number, payload: number, length?: number): Uint8Array {
  const anyLen = 1 + (length === undefined ? 0 : varintSize(length)) + payload;
  const kvLen = 1 + varintSize(key.length) + key.length + 1 + varintSize(anyLen) + anyLen;
  return encoded((w) => {
    w.ensure(1);
    w.buf[w.pos++] = 0x32;
    varint(w, kvLen);
    delimited(w, 0x0a, key);
    w.ensure(1);
    w.buf[w.pos++] = 0x12;
    varint(w, anyLen);
    w.ensure(1);
    w.buf[w.pos++] = tag;
    if (length !== undefined) varint(w, length);
  });
}

/** The writer of one field's attribute: fast paths for numbers, recurring strings and booleans. */
function fieldWriter(f: OtelField): Writer {
  const custom = f.ownValue;
  const get = f.field.get;
  const enc = f.field.json;
  const when = f.field.when;
  let write: Writer;
  if (!custom && enc === NUMBER) {
    // By the varint's size: an int AnyValue (0x18) and the varint.
    const key = UTF8.encode(f.key);
    const prefixes = Array.from({ length: 11 }, (_, size) => attributeHead(key, 0x18, size));
    write = (w, e) => {
      const n = get(e) as number;
      if (Number.isSafeInteger(n) && n >= 0) {
        w.bytes(prefixes[varintSize(n)]);
        varint(w, n);
      } else w.bytes(recordAttribute(f.key, n));
    };
  } else if (!custom && enc === BIG) {
    // A 64-bit number as its decimal string: digits written in place, no string made.
    const key = UTF8.encode(f.key);
    // By the number of digits: a string AnyValue (0x0a), its length and the (ASCII) digits.
    const prefixes = Array.from({ length: 17 }, (_, n) => attributeHead(key, 0x0a, n, n));
    write = (w, e) => {
      const n = Number(get(e) as bigint);
      if (Number.isSafeInteger(n) && n >= 0) {
        w.bytes(prefixes[decimalDigits(n)]);
        w.uint(n);
      } else w.bytes(recordAttribute(f.key, String(get(e))));
    };
  } else if (!custom && enc === BOOL) {
    const yes = recordAttribute(f.key, true);
    const no = recordAttribute(f.key, false);
    write = (w, e) => w.bytes(get(e) ? yes : no);
  } else if (enc === WORD || enc === STRING || custom) {
    const cache = new AttributeCache<Value | OtelValue>();
    const make = (v: Value | OtelValue) => recordAttribute(f.key, v as OtelValue);
    write = (w, e) => w.bytes(cache.get(f.get(e), make));
  } else {
    write = (w, e) => w.bytes(recordAttribute(f.key, f.get(e)));
  }
  return when ? (w, e) => when(e) && write(w, e) : write;
}

/** A cached group's encoding for one key: the values it was made from, and its bytes. */
interface Fragment {
  values: Value[];
  bytes: Uint8Array;
}

const CACHE_KEYS: Record<NonNullable<Field["group"]>, (e: ConnEvent) => string | number> = {
  process: (e) => e.pid,
  container: (e) => e.containerId || e.mntns,
};

/** A run of a group's fields, written as one fragment while its values stay the same. */
function groupWriter(fields: readonly OtelField[], group: NonNullable<Field["group"]>): Writer {
  const cache = new Map<string | number, Fragment>();
  const keyOf = CACHE_KEYS[group];
  const gets = fields.map((f) => f.field.get);
  return (w, e) => {
    const k = keyOf(e);
    let h = cache.get(k);
    for (let i = 0; h !== undefined && i < gets.length; i++) if (h.values[i] !== gets[i](e)) h = undefined;
    if (h === undefined) {
      const values = gets.map((get) => get(e));
      const bytes = encoded((b) => fields.forEach((f) => b.bytes(recordAttribute(f.key, f.get(e)))));
      if (cache.size >= MAX_CACHED) cache.clear();
      cache.set(k, h = { values, bytes });
    }
    w.bytes(h.bytes);
  };
}

/**
 * All attributes of a record: the writers called from straight-line code, one call
 * site each, so that V8 inlines each (a loop over them was one megamorphic site).
 * The code text holds only indices: the writers are passed in as values.
 */
function compileAttributes(): Writer {
  const ws = writers();
  const body = ws.map((_, i) => `w${i}(w, e);`).join("\n");
  const decl = ws.map((_, i) => `const w${i} = $[${i}];`).join("\n");
  return new Function("$", `${decl}\nreturn function writeAttributes(w, e) {\n${body}\n};`)(ws);
}

/** The attribute writers, in registry order: one per field, or one per run of a group. */
function writers(): Writer[] {
  const out: Writer[] = [];
  for (let i = 0; i < OTEL_FIELDS.length;) {
    const f = OTEL_FIELDS[i];
    const group = f.field.when ? undefined : f.field.group;
    if (!group) {
      out.push(fieldWriter(f));
      i++;
      continue;
    }
    let j = i;
    while (j < OTEL_FIELDS.length && OTEL_FIELDS[j].field.group === group && !OTEL_FIELDS[j].field.when) j++;
    out.push(groupWriter(OTEL_FIELDS.slice(i, j), group));
    i = j;
  }
  return out;
}

/** Decimal digits of a safe integer. */
function decimalDigits(n: number): number {
  let d = 1;
  for (let m = n; m >= 10; m = Math.floor(m / 10)) d++;
  return d;
}

/** Eight bytes little-endian of a non-negative ns count. */
function fixed64(w: JsonBytes, ns: bigint): void {
  w.ensure(8);
  const buf = w.buf;
  let lo = Number(ns & 0xffffffffn);
  let hi = Number(ns >> 32n);
  for (let i = 0; i < 4; i++, lo = Math.floor(lo / 256)) buf[w.pos++] = lo & 0xff;
  for (let i = 0; i < 4; i++, hi = Math.floor(hi / 256)) buf[w.pos++] = hi & 0xff;
}

/** A batch being written. */
export interface LogBatch {
  /** Records in it. */
  readonly count: number;
  /** Add one record; `observedNs` is wall-clock ns now. */
  add(e: ConnEvent, observedNs: bigint): void;
  /** The ExportLogsServiceRequest of the records added since the last take, and start anew. */
  take(): Uint8Array;
  /** A request `take` returned is no longer needed (sent, or dropped): its memory may be used again. */
  recycle(body: Uint8Array): void;
}

/** Spare batch buffers kept for the next batches: a fresh one per batch left the GC hundreds of MB behind. */
const MAX_SPARES = 4;

/** ExportLogsServiceRequest in protobuf, written record by record. */
export class ProtoLogBatch implements LogBatch {
  #w = new JsonBytes(1 << 16);
  /** Bytes kept before the records for the request's head (written at take, right before them). */
  #headRoom: number;
  #spares: Uint8Array[] = [];
  #count = 0;
  #attributes = compileAttributes();
  /** `0x0a len Resource` and `0x0a len InstrumentationScope`, once. */
  #resource: Uint8Array;
  #scope: Uint8Array;
  #severity = new Map<number, Uint8Array>();
  #bodies = new AttributeCache<string>();
  #names = new AttributeCache<string>();

  constructor(resource: Readonly<Record<string, string>>, scope: Scope) {
    const attrs = encoded((w) => Object.keys(resource).forEach((k) => w.bytes(attribute(0x0a, k, resource[k]))));
    this.#resource = encoded((w) => delimited(w, 0x0a, attrs));
    this.#scope = encoded((w) =>
      delimited(
        w,
        0x0a,
        encoded((s) => {
          delimited(s, 0x0a, UTF8.encode(scope.name));
          delimited(s, 0x12, UTF8.encode(scope.version));
        }),
      )
    );
    // resource_logs tag and length, the resource, scope_logs tag and length, the scope.
    this.#headRoom = 1 + 5 + this.#resource.length + 1 + 5 + this.#scope.length;
    this.#w.pos = this.#headRoom;
    for (const [n, text] of [[INFO, "INFO"], [WARN, "WARN"]] as const) {
      this.#severity.set(
        n,
        encoded((w) => (w.bytes(new Uint8Array([0x10, n])), delimited(w, 0x1a, UTF8.encode(text)))),
      );
    }
  }

  get count(): number {
    return this.#count;
  }

  add(e: ConnEvent, observedNs: bigint): void {
    const w = this.#w;
    // ScopeLogs.log_records (2): its length is known at the end; two bytes are kept for it.
    w.ensure(3);
    w.buf[w.pos++] = 0x12;
    const lenAt = w.pos;
    w.pos += 2;
    const start = w.pos;
    w.ensure(1);
    w.buf[w.pos++] = 0x09; // time_unix_nano, fixed64
    fixed64(w, e.wallNs);
    w.bytes(this.#severity.get(severityOf(e))!);
    w.bytes(this.#bodies.get(bodyOf(e), (b) => encoded((x) => delimited(x, 0x2a, anyValue(wellFormed(b))))));
    this.#attributes(w, e);
    w.ensure(1);
    w.buf[w.pos++] = 0x59; // observed_time_unix_nano, fixed64
    fixed64(w, observedNs);
    w.bytes(this.#names.get(e.event, () => encoded((x) => delimited(x, 0x62, UTF8.encode(eventNameOf(e))))));
    const len = w.pos - start;
    const buf = w.buf;
    if (len < 128) {
      buf.copyWithin(lenAt + 1, start, w.pos);
      buf[lenAt] = len;
      w.pos--;
    } else if (len < 16384) {
      buf[lenAt] = (len & 0x7f) | 0x80;
      buf[lenAt + 1] = len >> 7;
    } else {
      const size = varintSize(len);
      w.ensure(size - 2);
      w.buf.copyWithin(start + size - 2, start, w.pos);
      w.pos += size - 2;
      const end = w.pos;
      w.pos = lenAt;
      varint(w, len);
      w.pos = end;
    }
    this.#count++;
  }

  take(): Uint8Array {
    const w = this.#w;
    const recordsLen = w.pos - this.#headRoom;
    // ResourceLogs { resource = 1; scope_logs = 2 { scope = 1; log_records = 2 ... } }
    const scopeLogsLen = this.#scope.length + recordsLen;
    const resourceLogsLen = this.#resource.length + 1 + varintSize(scopeLogsLen) + scopeLogsLen;
    const head = scratch;
    head.pos = 0;
    head.ensure(1);
    head.buf[head.pos++] = 0x0a; // ExportLogsServiceRequest.resource_logs
    varint(head, resourceLogsLen);
    head.bytes(this.#resource);
    head.ensure(1);
    head.buf[head.pos++] = 0x12;
    varint(head, scopeLogsLen);
    head.bytes(this.#scope);
    // The head goes right before the records: the request is a view of the buffer, which the
    // request keeps; the batch goes on in a spare one.
    const start = this.#headRoom - head.pos;
    w.buf.set(head.buf.subarray(0, head.pos), start);
    const out = w.buf.subarray(start, w.pos);
    w.buf = this.#spares.pop() ?? new Uint8Array(w.buf.length);
    w.pos = this.#headRoom;
    this.#count = 0;
    return out;
  }

  recycle(body: Uint8Array): void {
    if (this.#spares.length < MAX_SPARES && body.byteOffset < this.#headRoom) {
      this.#spares.push(new Uint8Array(body.buffer));
    }
  }
}

/** What the transformer's serializer takes of a ReadableLogRecord. */
interface LogRecordLike {
  hrTime: [number, number];
  hrTimeObserved: [number, number];
  severityNumber: number;
  severityText: string;
  body: string;
  eventName: string;
  attributes: Record<string, OtelValue>;
  droppedAttributesCount: 0;
  resource: { attributes: Readonly<Record<string, string>> };
  instrumentationScope: Scope;
}

const hrTime = (ns: bigint): [number, number] => [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];

/** ExportLogsServiceRequest in OTLP's JSON, by the OpenTelemetry transformer. */
export class JsonLogBatch implements LogBatch {
  #records: LogRecordLike[] = [];
  #resource: { attributes: Readonly<Record<string, string>> };
  #scope: Scope;

  constructor(resource: Readonly<Record<string, string>>, scope: Scope) {
    this.#resource = { attributes: resource };
    this.#scope = scope;
  }

  get count(): number {
    return this.#records.length;
  }

  add(e: ConnEvent, observedNs: bigint): void {
    const severity = severityOf(e);
    this.#records.push({
      hrTime: hrTime(e.wallNs),
      hrTimeObserved: hrTime(observedNs),
      severityNumber: severity,
      severityText: severity === WARN ? "WARN" : "INFO",
      body: wellFormed(bodyOf(e)),
      eventName: eventNameOf(e),
      attributes: otelAttributes(e),
      droppedAttributesCount: 0,
      resource: this.#resource,
      instrumentationScope: this.#scope,
    });
  }

  take(): Uint8Array {
    const records = this.#records;
    this.#records = [];
    // deno-lint-ignore no-explicit-any
    return JsonLogsSerializer.serializeRequest(records as any) ?? new Uint8Array(0);
  }

  recycle(): void {}
}
