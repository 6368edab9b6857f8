/**
 * The event's fields, in output order: JSON keys, value getters and encodings come
 * from this one table, so adding a field is one edit.
 *
 * Fields that describe the process or the container repeat from event to event;
 * each such group is encoded once per distinct set of values and the fragment is
 * reused while the values stay the same (a cache keyed by pid or container).
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { jsonString } from "./sanitize.ts";
import { rfc3339Nano } from "./time.ts";

type Value = string | number | bigint | readonly string[];

interface Field {
  key: string;
  get: (e: ConnEvent) => Value;
  encode: (v: Value) => string;
  /** Fields of one group are encoded together and cached. */
  group?: "process" | "container";
}

const str = (v: Value) => jsonString(v as string);
const num = (v: Value) => String(v);
const bigStr = (v: Value) => `"${v}"`;
const strArray = (v: Value) => `[${(v as string[]).map(jsonString).join(",")}]`;

/** Each JSON key, in output order. */
export const JSON_FIELDS: readonly Field[] = [
  { key: "kernelTime", get: (e) => e.kernelTime, encode: bigStr },
  { key: "time", get: (e) => e.wallNs, encode: (v) => `"${rfc3339Nano(v as bigint)}"` },
  { key: "pid", get: (e) => e.pid, encode: num },
  { key: "tid", get: (e) => e.tid, encode: num },
  { key: "ppid", get: (e) => e.ppid, encode: num, group: "process" },
  { key: "uid", get: (e) => e.uid, encode: num, group: "process" },
  { key: "gid", get: (e) => e.gid, encode: num, group: "process" },
  { key: "user", get: (e) => e.user, encode: str, group: "process" },
  { key: "comm", get: (e) => e.comm, encode: str, group: "process" },
  { key: "exe", get: (e) => e.exe, encode: str, group: "process" },
  { key: "args", get: (e) => e.args, encode: strArray, group: "process" },
  { key: "procSource", get: (e) => e.procSource, encode: str, group: "process" },
  { key: "addressFamily", get: (e) => e.family, encode: (v) => (v === 6 ? '"AF_INET6"' : '"AF_INET"') },
  { key: "saddr", get: (e) => e.saddr, encode: str },
  { key: "sport", get: (e) => e.sport, encode: num },
  { key: "daddr", get: (e) => e.daddr, encode: str },
  { key: "dport", get: (e) => e.dport, encode: num },
  { key: "protocol", get: () => "tcp", encode: () => '"tcp"' },
  { key: "direction", get: (e) => e.direction, encode: str },
  { key: "status", get: (e) => e.status, encode: str },
  { key: "latencyUs", get: (e) => e.latencyUs, encode: num },
  { key: "container", get: (e) => e.container, encode: str, group: "container" },
  { key: "containerId", get: (e) => e.containerId, encode: str, group: "container" },
  { key: "containerRuntime", get: (e) => e.containerRuntime, encode: str, group: "container" },
  { key: "image", get: (e) => e.image, encode: str, group: "container" },
  { key: "pod", get: (e) => e.pod, encode: str, group: "container" },
  { key: "namespace", get: (e) => e.namespace, encode: str, group: "container" },
  { key: "cgroupId", get: (e) => e.cgroupId, encode: bigStr, group: "container" },
  { key: "mntns", get: (e) => e.mntns, encode: num, group: "container" },
  { key: "netns", get: (e) => e.netns, encode: num },
];

interface Cached {
  values: Value[];
  json: string;
}

/** A run of the table: one field, or a cached group of them. */
interface Segment {
  fields: readonly Field[];
  /** Prefix of each field: `{"key":` or `,"key":` */
  prefixes: readonly string[];
  cacheKey?: (e: ConnEvent) => string | number;
  cache?: Map<string | number, Cached>;
}

const MAX_CACHED = 4096;

function segments(): Segment[] {
  const out: Segment[] = [];
  JSON_FIELDS.forEach((f, i) => {
    const prefix = `${i === 0 ? "{" : ","}${JSON.stringify(f.key)}:`;
    const last = out[out.length - 1];
    if (f.group && last?.fields[0].group === f.group) {
      (last.fields as Field[]).push(f);
      (last.prefixes as string[]).push(prefix);
      return;
    }
    const seg: Segment = { fields: [f], prefixes: [prefix] };
    if (f.group === "process") {
      seg.cacheKey = (e) => e.pid;
      seg.cache = new Map();
    } else if (f.group === "container") {
      seg.cacheKey = (e) => e.containerId || e.mntns;
      seg.cache = new Map();
    }
    out.push(seg);
  });
  return out;
}

const SEGMENTS = segments();

function encodeRun(seg: Segment, values: Value[]): string {
  let s = "";
  for (let i = 0; i < seg.fields.length; i++) s += seg.prefixes[i] + seg.fields[i].encode(values[i]);
  return s;
}

function unchanged(seg: Segment, hit: Cached, e: ConnEvent): boolean {
  for (let i = 0; i < seg.fields.length; i++) if (seg.fields[i].get(e) !== hit.values[i]) return false;
  return true;
}

/** One event as one line of JSON (no newline). */
export function toJson(e: ConnEvent): string {
  let out = "";
  for (const seg of SEGMENTS) {
    if (!seg.cache) {
      const f = seg.fields[0];
      out += seg.prefixes[0] + f.encode(f.get(e));
      continue;
    }
    const key = seg.cacheKey!(e);
    const hit = seg.cache.get(key);
    if (hit && unchanged(seg, hit, e)) {
      out += hit.json;
      continue;
    }
    const values = seg.fields.map((f) => f.get(e));
    const json = encodeRun(seg, values);
    if (seg.cache.size >= MAX_CACHED) seg.cache.clear();
    seg.cache.set(key, { values, json });
    out += json;
  }
  return out + "}";
}
