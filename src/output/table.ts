/**
 * The bordered table of the original tool, streamed one row per event and fitted
 * to the terminal width. Rendering is cli-table3's; this file picks the columns
 * and their widths.
 * @module
 */
import Table from "cli-table3";
import type { ConnEvent } from "../event.ts";
import { forTerminal } from "./sanitize.ts";
import { clockTime } from "./time.ts";
import type { Renderer } from "./renderer.ts";
import type { LineWriter } from "./writer.ts";

interface Column {
  head: string;
  /** Minimum and preferred content widths. */
  min: number;
  want: number;
  cell: (e: ConnEvent) => string;
}

const endpoint = (addr: string, port: number, family: 4 | 6) => family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;

const COLUMNS: Column[] = [
  { head: "TIME", min: 8, want: 8, cell: (e) => clockTime(e.wallNs) },
  { head: "USER", min: 4, want: 10, cell: (e) => e.user || String(e.uid) },
  { head: "PID", min: 5, want: 7, cell: (e) => String(e.pid) },
  { head: "AF", min: 2, want: 2, cell: (e) => (e.family === 6 ? "v6" : "v4") },
  { head: "SRC", min: 9, want: 22, cell: (e) => endpoint(e.saddr, e.sport, e.family) },
  { head: "DEST", min: 9, want: 22, cell: (e) => endpoint(e.daddr, e.dport, e.family) },
  { head: "STATUS", min: 5, want: 11, cell: (e) => e.status },
  { head: "CONTAINER", min: 4, want: 16, cell: (e) => e.container },
  { head: "PROCESS", min: 6, want: 40, cell: (e) => e.exe || e.comm },
];

/** Content widths for a terminal `width` columns wide (80 at the least). */
export function fitWidths(width: number): number[] {
  // Each column takes its content plus one space either side and one border.
  const overhead = COLUMNS.length * 3 + 1;
  const widths = COLUMNS.map((c) => c.min);
  let spare = width - overhead - widths.reduce((a, b) => a + b, 0);
  // Grow towards the preferred widths left to right, then give PROCESS the rest.
  for (let i = 0; i < COLUMNS.length && spare > 0; i++) {
    const grow = Math.min(spare, COLUMNS[i].want - widths[i]);
    widths[i] += grow;
    spare -= grow;
  }
  if (spare > 0) widths[widths.length - 1] += spare;
  return widths;
}

/** Renders the header once, then one bordered row per event. */
export class TableRenderer {
  #widths: number[];
  #headerDone = false;

  constructor(width: number) {
    this.#widths = fitWidths(width);
  }

  #table(): Table.Table {
    return new Table({
      colWidths: this.#widths.map((w) => w + 2),
      style: { head: [], border: [], "padding-left": 1, "padding-right": 1 },
      wordWrap: false,
    });
  }

  /** The lines for one event: the header before the first. */
  render(e: ConnEvent): string[] {
    const t = this.#table();
    const row = COLUMNS.map((c) => forTerminal(c.cell(e)));
    const lines: string[] = [];
    if (!this.#headerDone) {
      t.push(COLUMNS.map((c) => c.head));
      t.push(row);
      const all = t.toString().split("\n");
      this.#headerDone = true;
      // top border, header, separator, row (the bottom border is footer())
      lines.push(...all.slice(0, all.length - 1));
      return lines;
    }
    t.push(row);
    const all = t.toString().split("\n");
    // drop the top and bottom borders: rows stream under the header
    return all.slice(1, all.length - 1);
  }

  /** The bottom border, once rows were printed. */
  footer(): string[] {
    if (!this.#headerDone) return [];
    const t = this.#table();
    t.push(COLUMNS.map(() => ""));
    const all = t.toString().split("\n");
    return [all[all.length - 1]];
  }
}

/** The bordered table on a writer. */
export class TableOutput implements Renderer {
  #out: LineWriter;
  #table: TableRenderer;
  constructor(out: LineWriter, width: number) {
    this.#out = out;
    this.#table = new TableRenderer(width);
  }
  event(e: ConnEvent): void {
    for (const l of this.#table.render(e)) this.#out.line(l);
  }
  flush(): void {
    this.#out.flush();
  }
  close(): void {
    for (const l of this.#table.footer()) this.#out.line(l);
    this.#out.flush();
  }
}
