/**
 * The JSON event: the registry's fields with a JSON encoding, in registry order,
 * written as bytes into a reused buffer (no string per event).
 *
 * Fields that describe the process or the container repeat from event to event;
 * each such group is encoded once per distinct set of values and the fragment is
 * reused while the values stay the same (a bounded cache keyed by pid or container).
 * Other fields are written directly: numbers digit by digit, words and addresses
 * from byte caches, the time's date part once per second.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { BIG, type Field, FIELDS, type JsonEncoding, NUMBER, STRING, TIME, type Value, WORD } from "../fields.ts";

type JsonField = Field & { json: JsonEncoding };

/** The JSON keys, in output order. */
export const JSON_FIELDS: readonly JsonField[] = FIELDS.filter((f): f is JsonField => f.json !== false);

/**
 * A run of the registry: one field, or a cached group of them. The getters and
 * encoders are copied out of the (variously shaped) registry entries into plain
 * arrays, which keeps the per-event loop's property loads monomorphic.
 */
interface Segment {
  group: Field["group"];
  when?: (e: ConnEvent) => boolean;
  gets: ((e: ConnEvent) => Value)[];
  encodings: JsonEncoding[];
  /** Prefix of each field: `{"key":` or `,"key":` */
  prefixes: string[];
  cacheKey?: (e: ConnEvent) => string | number;
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
    if (f.group && !f.when && last?.group === f.group) {
      last.gets.push(f.get);
      last.encodings.push(f.json);
      last.prefixes.push(prefix);
      return;
    }
    const seg: Segment = {
      group: f.when ? undefined : f.group,
      when: f.when,
      gets: [f.get],
      encodings: [f.json],
      prefixes: [prefix],
    };
    if (seg.group) seg.cacheKey = CACHE_KEYS[seg.group];
    out.push(seg);
  });
  return out;
}

const SEGMENTS = segments();

function encodeRun(seg: Segment, values: Value[]): string {
  let s = "";
  for (let i = 0; i < seg.gets.length; i++) s += seg.prefixes[i] + seg.encodings[i].encode(values[i]);
  return s;
}

/**
 * A growable byte buffer one event's JSON is written into, digit by digit and
 * fragment by fragment, without building a string.
 */
export class JsonBytes {
  buf: Uint8Array;
  pos = 0;

  /** `size`: the first buffer's bytes (it grows as needed). */
  constructor(size = 4096) {
    this.buf = new Uint8Array(size);
  }

  /** Make room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
  }

  bytes(b: Uint8Array): void {
    const n = b.length;
    this.ensure(n);
    if (n > 48) {
      this.buf.set(b, this.pos);
      this.pos += n;
      return;
    }
    // Short fragments (keys, words, addresses) copy faster in a loop than through set().
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) buf[p++] = b[i];
    this.pos = p;
  }

  /** A string's UTF-8 bytes: ASCII in a loop, anything else through TextEncoder. */
  text(s: string): void {
    this.ensure(s.length * 3);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.pos = p;
        this.pos += UTF8.encodeInto(s.slice(i), buf.subarray(p)).written;
        return;
      }
      buf[p++] = c;
    }
    this.pos = p;
  }

  /** A non-negative safe integer in decimal. */
  uint(n: number): void {
    this.ensure(16);
    const buf = this.buf;
    if (n < 10) {
      buf[this.pos++] = 0x30 + n;
      return;
    }
    if (n <= 0x7fffffff) {
      // Most numbers (ports, pids, ids, namespaces) fit 31 bits: integer division by a
      // constant, which compiles to a multiplication, instead of a float division per digit.
      let p = this.pos + digits31(n);
      this.pos = p;
      let m = n | 0;
      do {
        const q = (m / 10) | 0;
        buf[--p] = 0x30 + m - q * 10;
        m = q;
      } while (m !== 0);
      return;
    }
    // Larger ones (boot-clock ns, byte counts): one float division splits them into
    // two parts of 31 bits, each then written as above (a float division per digit cost more).
    let hi = Math.floor(n / 1e8);
    let lo = n - hi * 1e8; // exact: hi < 2^27
    if (lo < 0) { // a quotient rounded up to the next integer
      hi -= 1;
      lo += 1e8;
    }
    this.uint(hi);
    this.#eight(lo);
  }

  /** 0 <= n < 10^8 as exactly eight digits. */
  #eight(n: number): void {
    const buf = this.buf;
    let p = this.pos + 8;
    this.pos = p;
    let m = n | 0;
    for (let i = 0; i < 8; i++) {
      const q = (m / 10) | 0;
      buf[--p] = 0x30 + m - q * 10;
      m = q;
    }
  }
}

/** Decimal digits of 0 <= n < 2^31. */
function digits31(n: number): number {
  if (n < 100_000) return n < 100 ? (n < 10 ? 1 : 2) : n < 1_000 ? 3 : n < 10_000 ? 4 : 5;
  return n < 10_000_000 ? (n < 1_000_000 ? 6 : 7) : n < 100_000_000 ? 8 : n < 1_000_000_000 ? 9 : 10;
}

const UTF8 = new TextEncoder();
const QUOTE = 0x22;

type ByteWriter = (w: JsonBytes, v: Value) => void;

/** Bytes of strings that recur (words, addresses), bounded. */
class ByteCache {
  #map = new Map<string, Uint8Array>();
  /** The last string asked for and its bytes: a burst repeats its comm, addresses, words (no hash lookup). */
  #last = "";
  #lastBytes: Uint8Array | undefined;
  get(s: string, encode: (s: string) => string): Uint8Array {
    if (s === this.#last && this.#lastBytes !== undefined) return this.#lastBytes;
    let b = this.#map.get(s);
    if (!b) {
      if (this.#map.size >= MAX_CACHED) this.#map.clear();
      b = UTF8.encode(encode(s));
      this.#map.set(s, b);
    }
    this.#last = s;
    this.#lastBytes = b;
    return b;
  }
}

/** The second being written: its first ns, and the bytes before and after the fraction. */
let timeSecondNs = -1n;
let timePrefix = new Uint8Array(0);
let timeSuffix = new Uint8Array(0);

/**
 * `"<date>T<time>.` and `<offset>"` once per second; nine digits of fraction per
 * event, from one bigint subtraction while the second lasts (no division).
 */
function writeTime(w: JsonBytes, v: Value): void {
  const ns = v as bigint;
  // asIntN(64): the same value (wall-clock ns, below 2^63), subtracted in a machine word.
  let into = Number(BigInt.asIntN(64, ns - timeSecondNs));
  if (into < 0 || into >= 1_000_000_000) {
    timeSecondNs = ns - ns % 1_000_000_000n;
    into = Number(ns - timeSecondNs);
    const s = (TIME.encode as (v: Value) => string)(timeSecondNs);
    const dot = s.indexOf(".");
    timePrefix = UTF8.encode(s.slice(0, dot + 1));
    timeSuffix = UTF8.encode(s.slice(dot + 10));
  }
  w.bytes(timePrefix);
  w.ensure(9);
  let frac = into | 0; // < 10^9: integer division by a constant
  const buf = w.buf;
  for (let i = w.pos + 8; i >= w.pos; i--) {
    const q = (frac / 10) | 0;
    buf[i] = 0x30 + frac - q * 10;
    frac = q;
  }
  w.pos += 9;
  w.bytes(timeSuffix);
}

/**
 * The byte writer for one field: its `"key":` prefix, then the value, with fast
 * paths for numbers, words and times and the string form otherwise. Words and
 * per-event strings (addresses) recur: they are cached as bytes, prefix included.
 */
function byteWriter(enc: JsonEncoding, prefix: string): ByteWriter {
  const key = UTF8.encode(prefix);
  if (enc === NUMBER) {
    return (w, v) => {
      w.bytes(key);
      const n = v as number;
      if (Number.isSafeInteger(n) && n >= 0) w.uint(n);
      else w.text(enc.encode(v));
    };
  }
  if (enc === BIG) {
    return (w, v) => {
      w.bytes(key);
      // A bigint past 2^53 converts to an unsafe number: only exact ones take the fast path.
      const n = Number(v as bigint);
      if (Number.isSafeInteger(n) && n >= 0) {
        w.ensure(1);
        w.buf[w.pos++] = QUOTE;
        w.uint(n);
        w.ensure(1);
        w.buf[w.pos++] = QUOTE;
      } else w.text(enc.encode(v));
    };
  }
  if (enc === WORD || enc === STRING) {
    const cache = new ByteCache();
    const encode = (s: string) => prefix + enc.encode(s);
    return (w, v) => w.bytes(cache.get(v as string, encode));
  }
  if (enc === TIME) {
    return (w, v) => {
      w.bytes(key);
      writeTime(w, v);
    };
  }
  return (w, v) => {
    w.bytes(key);
    w.text(enc.encode(v));
  };
}

/** A cached group's encoding for one key: the values it was made from, and its bytes. */
interface Fragment {
  values: Value[];
  bytes: Uint8Array;
}

/**
 * The writer, compiled from the registry once at start: straight-line code with
 * one call site per field, so that V8 sees every getter and byte writer at its
 * own monomorphic site and inlines it (a loop over the fields made each call
 * megamorphic, and the JSON cost more than all other stages together). The code
 * text holds only indices and JavaScript syntax: keys, encodings and getters are
 * passed in as values, never spliced in as text.
 */
function compile(): (e: ConnEvent, w: JsonBytes) => void {
  const values: unknown[] = [];
  const ref = (v: unknown) => `$[${values.push(v) - 1}]`;
  const decl: string[] = [];
  let n = 0;
  // Each constant gets its own local, so the hot code reads a closure variable.
  const local = (v: unknown) => {
    const name = `c${n++}`;
    decl.push(`const ${name} = ${ref(v)};`);
    return name;
  };
  const body: string[] = [];
  for (const seg of SEGMENTS) {
    const gets = seg.gets.map(local);
    const code: string[] = [];
    if (!seg.cacheKey) {
      code.push(`${local(byteWriter(seg.encodings[0], seg.prefixes[0]))}(w, ${gets[0]}(e));`);
    } else {
      const cache = local(new Map<string | number, Fragment>());
      const miss = local((e: ConnEvent, key: string | number, map: Map<string | number, Fragment>) => {
        const vs = seg.gets.map((get) => get(e));
        const bytes = UTF8.encode(encodeRun(seg, vs));
        if (map.size >= MAX_CACHED) map.clear();
        map.set(key, { values: vs, bytes });
        return bytes;
      });
      const same = gets.map((g, i) => `h.values[${i}] === ${g}(e)`).join(" && ");
      code.push(
        `{ const k = ${local(seg.cacheKey)}(e); const h = ${cache}.get(k);`,
        `  w.bytes(h !== undefined && ${same} ? h.bytes : ${miss}(e, k, ${cache})); }`,
      );
    }
    body.push(...(seg.when ? [`if (${local(seg.when)}(e)) {`, ...code, "}"] : code));
  }
  const source = `${decl.join("\n")}\nreturn function writeJson(e, w) {\n${
    body.join("\n")
  }\nw.ensure(1);\nw.buf[w.pos++] = 0x7d;\n};`;
  return new Function("$", source)(values);
}

/** One event's JSON (no newline) into `w`. */
export const writeJson: (e: ConnEvent, w: JsonBytes) => void = compile();

const TEXT = new TextDecoder();
const scratch = new JsonBytes();

/** One event as one line of JSON (no newline), as a string: for tests and tools, not the hot path. */
export function toJson(e: ConnEvent): string {
  scratch.pos = 0;
  writeJson(e, scratch);
  return TEXT.decode(scratch.buf.subarray(0, scratch.pos));
}
