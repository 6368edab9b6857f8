/**
 * The bordered table of the original tool, streamed one row per event and fitted
 * to the terminal width. The columns are the registry's (fields.ts); rendering is
 * cli-table3's, and this file fits their widths.
 * @module
 */
import Table from "cli-table3";
import type { ConnEvent } from "../event.ts";
import { cellText, COLUMNS } from "../fields.ts";
import { forTerminal } from "../text/sanitize.ts";
import { LineRenderer } from "./renderer.ts";
import type { LineWriter } from "./writer.ts";

const PLAIN_ASCII = /^[\x20-\x7e]*$/;

type Column = (typeof COLUMNS)[number];

/**
 * `text` cut to `w` characters from the start: a path loses whole directories
 * before its name (`…/bin/java`), and only a name longer than the cell is cut.
 */
export function keepEnd(text: string, w: number): string {
  const slash = text.lastIndexOf("/", text.length - 2);
  if (slash >= 0 && text.length - slash + 1 <= w) {
    let from = slash;
    for (;;) {
      const prev = text.lastIndexOf("/", from - 1);
      if (prev < 0 || text.length - prev + 1 > w) break;
      from = prev;
    }
    return "…" + text.slice(from);
  }
  return "…" + text.slice(text.length - w + 1);
}

/**
 * The columns that fit a terminal `width` wide, and their content widths.
 * `optional` columns are among them only when `withOptional`.
 */
export function fitColumns(width: number, withOptional = false): { columns: Column[]; widths: number[] } {
  // Each column takes its content plus one space either side and one border.
  const need = (cs: readonly Column[]) => cs.reduce((n, c) => n + c.min + 3, 1);
  // Too narrow for every column at its minimum: drop the least important first.
  let columns = COLUMNS.filter((c) => withOptional || !c.optional);
  while (columns.length > 1 && need(columns) > width) {
    const least = columns.reduce((a, b) => (b.priority > a.priority ? b : a));
    columns = columns.filter((c) => c !== least);
  }
  const widths = columns.map((c) => c.min);
  let spare = width - need(columns);
  // Grow towards the preferred widths, most important first (left to right among
  // equals), then give the fill column the rest.
  const order = columns.map((_, i) => i).sort((a, b) => columns[a].priority - columns[b].priority || a - b);
  for (const i of order) {
    if (spare <= 0) break;
    const grow = Math.min(spare, columns[i].want - widths[i]);
    widths[i] += grow;
    spare -= grow;
  }
  const fill = columns.findIndex((c) => c.fill);
  if (spare > 0) widths[fill < 0 ? widths.length - 1 : fill] += spare;
  return { columns, widths };
}

/** Content widths of every column for a terminal `width` wide (80 or more: all fit). */
export function fitWidths(width: number): number[] {
  return fitColumns(width).widths;
}

/** Renders the header once, then one bordered row per event. */
export class TableRenderer {
  #columns: Column[];
  #widths: number[];
  #headerDone = false;
  #fast: boolean;

  /**
   * @param fast draw plain-ASCII rows directly (false: always through cli-table3)
   * @param withOptional show the optional columns (the NEW column of `--baseline`)
   */
  constructor(width: number, fast = true, withOptional = false) {
    ({ columns: this.#columns, widths: this.#widths } = fitColumns(width, withOptional));
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
    let plain = true;
    const row = this.#columns.map((c, i) => {
      const text = forTerminal(cellText(c, e));
      if (plain && !PLAIN_ASCII.test(text)) plain = false;
      const w = this.#widths[i];
      return c.keepEnd && text.length > w ? keepEnd(text, w) : text;
    });
    // A cell cut to keep its end starts with "…", one column wide: the fast path draws it alike.
    if (this.#headerDone && this.#fast && plain) return [this.#plainRow(row)];
    const t = this.#table();
    const lines: string[] = [];
    if (!this.#headerDone) {
      t.push(this.#columns.map((c) => c.head));
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
    t.push(this.#columns.map(() => ""));
    const all = t.toString().split("\n");
    return [all[all.length - 1]];
  }
}

/** The bordered table on a writer. */
export class TableOutput extends LineRenderer {
  #table: TableRenderer;
  constructor(out: LineWriter, width: number, withOptional = false) {
    super(out);
    this.#table = new TableRenderer(width, true, withOptional);
  }
  event(e: ConnEvent): void {
    const lines = this.#table.render(e);
    // Header lines carry no event: only the row counts if it is dropped.
    for (let i = 0; i < lines.length; i++) this.out.line(lines[i], i === lines.length - 1 ? 1 : 0);
  }
  override close(): void {
    for (const l of this.#table.footer()) this.out.line(l, 0);
    this.out.flush();
  }
}
