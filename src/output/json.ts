/**
 * The JSON event: the registry's fields with a JSON encoding, in registry order.
 *
 * Fields that describe the process or the container repeat from event to event;
 * each such group is encoded once per distinct set of values and the fragment is
 * reused while the values stay the same (a bounded cache keyed by pid or container).
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { type Field, FIELDS, type JsonEncoding, type Value } from "../fields.ts";

type JsonField = Field & { json: JsonEncoding };

/** The JSON keys, in output order. */
export const JSON_FIELDS: readonly JsonField[] = FIELDS.filter((f): f is JsonField => f.json !== false);

interface Cached {
  values: Value[];
  json: string;
}

/**
 * A run of the registry: one field, or a cached group of them. The getters and
 * encoders are copied out of the (variously shaped) registry entries into plain
 * arrays, which keeps the per-event loop's property loads monomorphic.
 */
interface Segment {
  group: Field["group"];
  gets: ((e: ConnEvent) => Value)[];
  encodes: ((v: Value) => string)[];
  /** Prefix of each field: `{"key":` or `,"key":` */
  prefixes: string[];
  cacheKey?: (e: ConnEvent) => string | number;
  cache?: Map<string | number, Cached>;
}

const MAX_CACHED = 4096;

const CACHE_KEYS: Record<NonNullable<Field["group"]>, (e: ConnEvent) => string | number> = {
  process: (e) => e.pid,
  container: (e) => e.containerId || e.mntns,
};

function segments(): Segment[] {
  const out: Segment[] = [];
  JSON_FIELDS.forEach((f, i) => {
    const prefix = `${i === 0 ? "{" : ","}${JSON.stringify(f.key)}:`;
    const last = out[out.length - 1];
    if (f.group && last?.group === f.group) {
      last.gets.push(f.get);
      last.encodes.push(f.json.encode);
      last.prefixes.push(prefix);
      return;
    }
    const seg: Segment = { group: f.group, gets: [f.get], encodes: [f.json.encode], prefixes: [prefix] };
    if (f.group) {
      seg.cacheKey = CACHE_KEYS[f.group];
      seg.cache = new Map();
    }
    out.push(seg);
  });
  return out;
}

const SEGMENTS = segments();

function encodeRun(seg: Segment, values: Value[]): string {
  let s = "";
  for (let i = 0; i < seg.gets.length; i++) s += seg.prefixes[i] + seg.encodes[i](values[i]);
  return s;
}

function unchanged(seg: Segment, hit: Cached, e: ConnEvent): boolean {
  for (let i = 0; i < seg.gets.length; i++) if (seg.gets[i](e) !== hit.values[i]) return false;
  return true;
}

/** One event as one line of JSON (no newline). */
export function toJson(e: ConnEvent): string {
  let out = "";
  for (const seg of SEGMENTS) {
    if (!seg.cache) {
      out += seg.prefixes[0] + seg.encodes[0](seg.gets[0](e));
      continue;
    }
    const key = seg.cacheKey!(e);
    const hit = seg.cache.get(key);
    if (hit && unchanged(seg, hit, e)) {
      out += hit.json;
      continue;
    }
    const values = seg.gets.map((get) => get(e));
    const json = encodeRun(seg, values);
    if (seg.cache.size >= MAX_CACHED) seg.cache.clear();
    seg.cache.set(key, { values, json });
    out += json;
  }
  return out + "}";
}
