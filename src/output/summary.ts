/**
 * `-output summary`: an audit snapshot. Events are folded into unique flows (the
 * registry's flow fields: process, user, container, destination, status) with a
 * count and the first and last time seen, printed once at the end as a table or JSON.
 * @module
 */
import Table from "cli-table3";
import type { ConnEvent } from "../event.ts";
import { cellText, COLUMNS, FIELDS } from "../fields.ts";
import type { Renderer } from "./renderer.ts";
import { forTerminal } from "../text/sanitize.ts";
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

/** The table's columns for a flow: the registry's columns of the flow's fields. */
const FLOW_COLUMNS = FLOW_KEYS.flatMap((k) => COLUMNS.filter((c) => c.field === k.field));

/** One unique flow: its keys' values, count, first and last seen. */
export type Flow = Record<string, string | number> & { count: number; firstSeen: string; lastSeen: string };

interface Acc {
  values: (string | number)[];
  /** The first event of the flow, for the table's cells. */
  sample: ConnEvent;
  count: number;
  first: bigint;
  last: bigint;
}

/** Folds events into flows. */
export class FlowTable {
  #flows = new Map<string, Acc>();

  add(e: ConnEvent): void {
    const values = FLOW_KEYS.map((k) => k.value(e));
    const key = values.join("\0");
    const a = this.#flows.get(key);
    if (a) {
      a.count++;
      if (e.wallNs < a.first) a.first = e.wallNs;
      if (e.wallNs > a.last) a.last = e.wallNs;
      return;
    }
    this.#flows.set(key, { values, sample: e, count: 1, first: e.wallNs, last: e.wallNs });
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
      return { ...keys, count: a.count, firstSeen: rfc3339Nano(a.first), lastSeen: rfc3339Nano(a.last) };
    });
  }

  /** Table rows: count, the flow's columns, first and last seen. */
  rows(): string[][] {
    return this.#sorted().map((a) => [
      String(a.count),
      ...FLOW_COLUMNS.map((c) => cellText(c, a.sample)),
      rfc3339Nano(a.first),
      rfc3339Nano(a.last),
    ]);
  }
}

/** The summary table's header. */
export const SUMMARY_HEAD = ["COUNT", ...FLOW_COLUMNS.map((c) => c.head), "FIRST SEEN", "LAST SEEN"];

/** The summary output: nothing until close(). */
export class SummaryRenderer implements Renderer {
  #out: LineWriter;
  #format: "table" | "json";
  #table = new FlowTable();

  constructor(out: LineWriter, format: "table" | "json") {
    this.#out = out;
    this.#format = format;
  }

  event(e: ConnEvent): void {
    this.#table.add(e);
  }

  flush(): void {}

  close(): void {
    if (this.#format === "json") {
      for (const f of this.#table.flows()) this.#out.line(JSON.stringify(f));
    } else {
      const t = new Table({ head: SUMMARY_HEAD, style: { head: [], border: [] } });
      for (const row of this.#table.rows()) t.push(row.map(forTerminal));
      this.#out.line(t.toString());
    }
    this.#out.flush();
  }
}
