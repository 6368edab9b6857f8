/**
 * `-output summary`: an audit snapshot. Events are folded into unique flows
 * (process, user, container, destination, status) with a count and the first and
 * last time seen, printed once at the end as a table or JSON.
 * @module
 */
import Table from "cli-table3";
import type { ConnEvent } from "../event.ts";
import type { Renderer } from "./renderer.ts";
import { forTerminal } from "./sanitize.ts";
import { rfc3339Nano } from "./time.ts";
import type { LineWriter } from "./writer.ts";

/** One unique flow. */
export interface Flow {
  process: string;
  user: string;
  container: string;
  daddr: string;
  dport: number;
  status: string;
  count: number;
  firstSeen: string;
  lastSeen: string;
}

interface Acc {
  flow: Omit<Flow, "firstSeen" | "lastSeen">;
  first: bigint;
  last: bigint;
}

/** Folds events into flows. */
export class FlowTable {
  #flows = new Map<string, Acc>();

  add(e: ConnEvent): void {
    const process = e.exe || e.comm;
    const user = e.user || String(e.uid);
    const key = `${process}\0${user}\0${e.container}\0${e.daddr}\0${e.dport}\0${e.status}`;
    const a = this.#flows.get(key);
    if (a) {
      a.flow.count++;
      if (e.wallNs < a.first) a.first = e.wallNs;
      if (e.wallNs > a.last) a.last = e.wallNs;
      return;
    }
    this.#flows.set(key, {
      flow: { process, user, container: e.container, daddr: e.daddr, dport: e.dport, status: e.status, count: 1 },
      first: e.wallNs,
      last: e.wallNs,
    });
  }

  /** Flows, most frequent first, then by destination. */
  flows(): Flow[] {
    return [...this.#flows.values()]
      .sort((x, y) =>
        y.flow.count - x.flow.count || x.flow.daddr.localeCompare(y.flow.daddr) || x.flow.dport - y.flow.dport ||
        x.flow.process.localeCompare(y.flow.process)
      )
      .map((a) => ({ ...a.flow, firstSeen: rfc3339Nano(a.first), lastSeen: rfc3339Nano(a.last) }));
  }
}

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
    const flows = this.#table.flows();
    if (this.#format === "json") {
      for (const f of flows) this.#out.line(JSON.stringify(f));
    } else {
      const t = new Table({
        head: ["COUNT", "PROCESS", "USER", "CONTAINER", "DEST", "STATUS", "FIRST SEEN", "LAST SEEN"],
        style: { head: [], border: [] },
      });
      for (const f of flows) {
        const dest = f.daddr.includes(":") ? `[${f.daddr}]:${f.dport}` : `${f.daddr}:${f.dport}`;
        t.push(
          [String(f.count), f.process, f.user, f.container, dest, f.status, f.firstSeen, f.lastSeen].map(forTerminal),
        );
      }
      this.#out.line(t.toString());
    }
    this.#out.flush();
  }
}
