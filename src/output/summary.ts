/**
 * `-output summary`: an audit snapshot. Events are folded into unique flows (the
 * registry's flow fields: process, user, container, destination, status) with a
 * count and the first and last time seen, printed once at the end as a table or JSON,
 * or drawn as a map of who talks to whom (map.ts).
 * @module
 */
import Table from "cli-table3";
import type { ConnEvent } from "../event.ts";
import { cellText, COLUMNS, FIELDS, humanBytes, humanDuration } from "../fields.ts";
import { FlowMap, type MapFormat } from "./map.ts";
import { LineRenderer } from "./renderer.ts";
import { forTerminal, jsonString } from "../text/sanitize.ts";
import { rfc3339Nano } from "../text/time.ts";
import type { LineWriter } from "./writer.ts";

/** The registry's flow keys, in flow order: what makes two events one flow. */
const FLOW_KEYS = FIELDS.filter((f) => f.flow)
  .sort((a, b) => a.flow!.at - b.flow!.at)
  .map((f) => ({
    key: f.flow!.key ?? f.key,
    value: f.flow!.value ?? ((e: ConnEvent) => f.get(e) as string | number),
    field: f,
  }));

const encode = (v: string | number) => (typeof v === "number" ? String(v) : jsonString(v));

/** The table's columns for a flow: the registry's columns of the flow's fields. */
const FLOW_COLUMNS = FLOW_KEYS.flatMap((k) => COLUMNS.filter((c) => c.field === k.field));

/**
 * A flow's cell: its first event's, except that an inbound flow's remote end is
 * the client's address and the local port it came to (the client's port differs
 * from connection to connection).
 */
function flowCell(c: (typeof FLOW_COLUMNS)[number], sample: ConnEvent, status: string | number): string {
  if (c.field.key === "daddr" && sample.direction === "inbound") {
    const addr = sample.family === 6 ? `[${sample.daddr}]` : sample.daddr;
    return `${addr} → :${sample.sport}`;
  }
  // A flow of close records mixes who closed: the flow is "closed".
  if (c.field.key === "status" && sample.event === "close") return "closed";
  // A flow record stands for records of several statuses: each has its row.
  if (c.field.key === "status" && sample.event === "flow") return String(status);
  return cellText(c, sample);
}

/** One unique flow: its keys' values, count, first and last seen. */
export type Flow = Record<string, string | number> & { count: number; firstSeen: string; lastSeen: string };

/** What a flow's close records add up to (`--events close`). */
interface Closes {
  bytesSent: number;
  bytesReceived: number;
  maxDurationMs: number;
}

interface Acc {
  values: (string | number)[];
  /** The first event of the flow, for the table's cells. */
  sample: ConnEvent;
  count: number;
  first: bigint;
  last: bigint;
  /** Totals of the flow's close records; undefined for flows of other records. */
  closes?: Closes;
}

/** Flows a summary tracks one by one; anyone can make refused connects to many addresses. */
export const MAX_FLOWS = 10_000;

/** What did not fit: events of flows past the cap, folded into one row. */
interface Overflow {
  count: number;
  first: bigint;
  last: bigint;
}

function widen(a: { count: number; first: bigint; last: bigint }, first: bigint, n = 1, last = first): void {
  a.count += n;
  if (first < a.first) a.first = first;
  if (last > a.last) a.last = last;
}

const STATUS_AT = FLOW_KEYS.findIndex((k) => k.key === "status");

/** Folds events into flows, at most `max` of them; the rest into one overflow row. */
export class FlowTable {
  #flows = new Map<string, Acc>();
  #max: number;
  /** Events of flows past the cap, once there are any. */
  overflow: Overflow | undefined;

  constructor(max = MAX_FLOWS) {
    this.#max = max;
  }

  /** Flows kept, and the overflow row when there is one. */
  get size(): number {
    return this.#flows.size + (this.overflow ? 1 : 0);
  }

  /**
   * One event; a flow record (`--flows`) adds what it counted: its records by
   * status, and its closes (with their totals) as the close records they stand for.
   */
  add(e: ConnEvent): void {
    const f = e.flow;
    if (!f) return this.#add(e, e.event === "close", 1, e.wallNs, e.wallNs);
    for (const [status, n] of f.statuses) this.#add(e, false, n, f.firstSeen, f.lastSeen, status);
    if (f.closes > 0) this.#add(e, true, f.closes, f.firstSeen, f.lastSeen, "closed");
  }

  #add(e: ConnEvent, close: boolean, n: number, first: bigint, last: bigint, status?: string): void {
    const values = FLOW_KEYS.map((k) => k.value(e));
    if (status !== undefined) values[STATUS_AT] = status;
    const key = values.join("\0");
    let a = this.#flows.get(key);
    if (a) widen(a, first, n, last);
    else if (this.#flows.size >= this.#max) {
      if (this.overflow) widen(this.overflow, first, n, last);
      else this.overflow = { count: n, first, last };
      return;
    } else {
      a = { values, sample: e, count: n, first, last };
      this.#flows.set(key, a);
    }
    if (close) {
      const c = a.closes ??= { bytesSent: 0, bytesReceived: 0, maxDurationMs: 0 };
      c.bytesSent += e.bytesSent;
      c.bytesReceived += e.bytesReceived;
      if (e.durationMs > c.maxDurationMs) c.maxDurationMs = e.durationMs;
    }
  }

  /** Flows, most frequent first, then by destination and process. */
  #sorted(): Acc[] {
    const at = (name: string) => FLOW_KEYS.findIndex((k) => k.key === name);
    const [daddr, dport, process] = [at("daddr"), at("dport"), at("process")];
    return [...this.#flows.values()].sort((x, y) =>
      y.count - x.count || String(x.values[daddr]).localeCompare(String(y.values[daddr])) ||
      Number(x.values[dport]) - Number(y.values[dport]) ||
      String(x.values[process]).localeCompare(String(y.values[process]))
    );
  }

  /** Flows as JSON objects: the flow keys, then count and first/last seen. */
  flows(): Flow[] {
    return this.#sorted().map((a) => {
      const keys = Object.fromEntries(FLOW_KEYS.map((k, i) => [k.key, a.values[i]]));
      return {
        ...keys,
        count: a.count,
        ...a.closes,
        firstSeen: rfc3339Nano(a.first),
        lastSeen: rfc3339Nano(a.last),
      };
    });
  }

  /** Flows as JSON lines, escaped as the event JSON is; the overflow row last. */
  jsonLines(): string[] {
    const lines = this.#sorted().map((a) => {
      let s = "";
      FLOW_KEYS.forEach((k, i) => (s += `${i ? "," : "{"}${JSON.stringify(k.key)}:${encode(a.values[i])}`));
      const c = a.closes;
      if (c) {
        s +=
          `,"count":${a.count},"bytesSent":${c.bytesSent},"bytesReceived":${c.bytesReceived},"maxDurationMs":${c.maxDurationMs}`;
      } else s += `,"count":${a.count}`;
      return `${s},"firstSeen":"${rfc3339Nano(a.first)}","lastSeen":"${rfc3339Nano(a.last)}"}`;
    });
    const o = this.overflow;
    if (o) {
      lines.push(
        `{"overflow":true,"count":${o.count},"firstSeen":"${rfc3339Nano(o.first)}","lastSeen":"${
          rfc3339Nano(o.last)
        }"}`,
      );
    }
    return lines;
  }

  /** Table rows: count, the flow's columns, first and last seen; the overflow row last. */
  rows(): string[][] {
    const rows = this.#sorted().map((a) => [
      String(a.count),
      ...FLOW_COLUMNS.map((c) => flowCell(c, a.sample, a.values[STATUS_AT])),
      a.closes
        ? `${humanBytes(a.closes.bytesSent)}/${humanBytes(a.closes.bytesReceived)} ${
          humanDuration(a.closes.maxDurationMs)
        }`
        : "",
      rfc3339Nano(a.first),
      rfc3339Nano(a.last),
    ]);
    const o = this.overflow;
    if (o) {
      const label = `(flows past the first ${this.#max})`;
      rows.push([
        String(o.count),
        label,
        ...FLOW_COLUMNS.map(() => ""),
        rfc3339Nano(o.first),
        rfc3339Nano(o.last),
      ]);
    }
    return rows;
  }
}

/** The summary table's header. */
export const SUMMARY_HEAD = [
  "COUNT",
  ...FLOW_COLUMNS.map((c) => c.head),
  "TX/RX MAX DURATION",
  "FIRST SEEN",
  "LAST SEEN",
];

/** How `-output summary` prints: a table or JSON lines of flows, or a map of them. */
export type SummaryFormat = "table" | "json" | MapFormat;

/** The summary output: nothing until close(). */
export class SummaryRenderer extends LineRenderer {
  #format: SummaryFormat;
  #table: FlowTable;
  #map: FlowMap | undefined;
  #log: (line: string) => void;
  #novelOnly: boolean;
  #max: number;

  /** @param novelOnly list only the flows a baseline does not cover (`--baseline`) */
  constructor(
    out: LineWriter,
    format: SummaryFormat,
    log: (line: string) => void = () => {},
    max = MAX_FLOWS,
    novelOnly = false,
  ) {
    super(out);
    this.#format = format;
    this.#log = log;
    this.#max = max;
    this.#table = new FlowTable(max);
    if (format === "dot" || format === "mermaid") this.#map = new FlowMap(max);
    this.#novelOnly = novelOnly;
  }

  event(e: ConnEvent): void {
    if (this.#novelOnly && e.novel !== true) return;
    const map = this.#map;
    if (map) {
      const full = map.overflow > 0;
      map.add(e);
      if (!full && map.overflow > 0) {
        this.#log(`lightmon: summary: more than ${this.#max} edges; the rest are counted in a comment of the map`);
      }
      return;
    }
    const full = this.#table.overflow !== undefined;
    this.#table.add(e);
    if (!full && this.#table.overflow) {
      this.#log(`lightmon: summary: more than ${this.#max} flows; the rest are counted in one overflow row`);
    }
  }

  override flush(): void {}

  /** Flows listed so far (the overflow row counts as one; a map's edges). */
  flowCount(): number {
    return this.#map ? this.#map.size : this.#table.size;
  }

  /** The flows; their lines carry no event each (every event was counted into a flow). */
  override close(): void {
    if (this.#map) {
      this.out.line(this.#map.text(this.#format as MapFormat), 0);
    } else if (this.#format === "json") {
      for (const line of this.#table.jsonLines()) this.out.line(line, 0);
    } else {
      const t = new Table({ head: SUMMARY_HEAD, style: { head: [], border: [] } });
      for (const row of this.#table.rows()) t.push(row.map(forTerminal));
      this.out.line(t.toString(), 0);
    }
    this.out.flush();
  }
}
