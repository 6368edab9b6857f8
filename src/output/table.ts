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

const PLAIN_ASCII = /^[\x20-\x7e]*$/;

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
  #fast: boolean;

  /** @param fast draw plain-ASCII rows directly (false: always through cli-table3) */
  constructor(width: number, fast = true) {
    this.#widths = fitWidths(width);
    this.#fast = fast;
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
    const row = COLUMNS.map((c) => forTerminal(c.cell(e)));
    if (this.#headerDone && this.#fast && row.every((c) => PLAIN_ASCII.test(c))) return [this.#plainRow(row)];
    const t = this.#table();
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

  /**
   * The row cli-table3 would draw, for cells of printable ASCII, where width is
   * length: 100x cheaper, so the default output keeps up with a connect storm.
   * Anything else (wide or combining characters) goes through cli-table3.
   */
  #plainRow(cells: string[]): string {
    let line = "│";
    for (let i = 0; i < cells.length; i++) {
      const w = this.#widths[i];
      const c = cells[i];
      line += " " + (c.length > w ? c.slice(0, w - 1) + "…" : c.padEnd(w)) + " │";
    }
    return line;
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
