/**
 * The bordered table of the original tool, streamed one row per event and fitted
 * to the terminal width. The columns are the registry's (fields.ts); rendering is
 * cli-table3's, and this file fits their widths.
 * @module
 */
import Table from "cli-table3";
import type { ConnEvent } from "../event.ts";
import { cellText, closeFigures, COLUMNS, statusCell } from "../fields.ts";
import { forTerminal } from "../text/sanitize.ts";
import { BatchRenderer } from "./renderer.ts";
import { JsonBytes } from "./json.ts";
import type { LineWriter } from "./writer.ts";

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

/** The status cell's width when it also carries a close's figures (`reset 1.0M/3.0M 2.3s` is 20). */
const STATUS_WITH_FIGURES = 18;
/** What the program's cell gives up for them: `…/bin/python3` still fits. */
const PROCESS_BESIDE_FIGURES = 14;

/**
 * A close's status cell, for a table too narrow for the TX/RX column: its figures,
 * `68K/0B 12ms` (a row with bytes and a duration can only be a close; who closed
 * it is left to wider tables and JSON), and `reset 100B/0B 5ms` for a reset, the
 * exception worth seeing, when that fits.
 */
function statusWithFigures(e: ConnEvent): string {
  if (e.event !== "close") return statusCell(e);
  const figures = closeFigures(e);
  const reset = `reset ${figures}`;
  return e.closedBy === "reset" && reset.length <= STATUS_WITH_FIGURES ? reset : figures;
}

/**
 * The columns that fit a terminal `width` wide, and their content widths.
 * `optional` columns are among them only when `withOptional`. With `closes`
 * (close records are reported) and no room for the TX/RX column, the status
 * column takes a close's figures, so "how much" shows on any terminal.
 */
export function fitColumns(
  width: number,
  withOptional = false,
  closes = false,
): { columns: Column[]; widths: number[] } {
  const candidates = COLUMNS.filter((c) => withOptional || !c.optional);
  const fitted = fitFrom(candidates, width);
  const shown = (head: string) => fitted.columns.some((c) => c.head === head);
  if (!closes || shown("TX/RX DURATION") || !shown("STATUS")) return fitted;
  return fitFrom(
    candidates.filter((c) => c.head !== "TX/RX DURATION").map((c) =>
      c.head === "STATUS"
        ? { ...c, min: STATUS_WITH_FIGURES, want: STATUS_WITH_FIGURES, cell: statusWithFigures }
        : c.head === "PROCESS"
        ? { ...c, min: PROCESS_BESIDE_FIGURES }
        : c
    ),
    width,
  );
}

function fitFrom(candidates: readonly Column[], width: number): { columns: Column[]; widths: number[] } {
  // Each column takes its content plus one space either side and one border.
  const need = (cs: readonly Column[]) => cs.reduce((n, c) => n + c.min + 3, 1);
  // Too narrow for every column at its minimum: drop the least important first.
  let columns = [...candidates];
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

/** `│` and `…` in UTF-8. */
const BAR = [0xe2, 0x94, 0x82];
const ELLIPSIS = [0xe2, 0x80, 0xa6];

/**
 * One cell of the row cli-table3 would draw, as bytes: ` text │`, the text padded
 * or cut to `width` (a path keeps its end). False when the text is not printable
 * ASCII, whose width is its length: cli-table3 draws such a row.
 */
function putCell(w: JsonBytes, t: string, width: number, cutStart: boolean): boolean {
  const n = t.length;
  let s = t;
  if (n > width) {
    for (let i = 0; i < n; i++) {
      const c = t.charCodeAt(i);
      if (c < 0x20 || c > 0x7e) return false;
    }
    // The one non-ASCII character left is the "…" of the cut, one column wide.
    s = cutStart ? keepEnd(t, width) : t.slice(0, width - 1) + "…";
  }
  w.ensure(width + 8);
  const buf = w.buf;
  let p = w.pos;
  buf[p++] = 0x20;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e) buf[p++] = c;
    else if (c === 0x2026 && s !== t) {
      buf[p++] = ELLIPSIS[0];
      buf[p++] = ELLIPSIS[1];
      buf[p++] = ELLIPSIS[2];
    } else return false;
  }
  for (let i = s.length; i < width; i++) buf[p++] = 0x20;
  buf[p++] = 0x20;
  buf[p++] = BAR[0];
  buf[p++] = BAR[1];
  buf[p++] = BAR[2];
  w.pos = p;
  return true;
}

/** Writes one event's row into `w` (no newline); false, with `w.pos` where it was, when cli-table3 must draw it. */
type RowWriter = (e: ConnEvent, w: JsonBytes) => boolean;

/**
 * The row cli-table3 would draw, for cells of printable ASCII, where width is
 * length, written as bytes: 100x cheaper than cli-table3, so the default output
 * keeps up with a connect storm. Compiled once per renderer into straight-line
 * code, as the JSON writer is: each column's cell function gets its own call
 * site, which V8 inlines (a loop over the columns made every call megamorphic).
 * The code text holds only indices and numbers; cell functions are passed in.
 */
function compileRow(columns: readonly Column[], widths: readonly number[]): RowWriter {
  const cell = (c: Column) => c.cell ?? ((e: ConnEvent) => String(c.field.get(e)));
  const body = columns.map((c, i) =>
    `if (!put(w, cell${i}(e), ${widths[i]}, ${c.keepEnd === true})) { w.pos = start; return false; }`
  );
  const source = `${columns.map((_, i) => `const cell${i} = $.cells[${i}];`).join("\n")}
    const put = $.put;
    return function writeRow(e, w) {
      const start = w.pos;
      w.ensure(3);
      w.buf[w.pos++] = ${BAR[0]}; w.buf[w.pos++] = ${BAR[1]}; w.buf[w.pos++] = ${BAR[2]};
      ${body.join("\n")}
      return true;
    };`;
  return new Function("$", source)({ cells: columns.map(cell), put: putCell });
}

const UTF8 = new TextDecoder();

/** Renders the header once, then one bordered row per event. */
export class TableRenderer {
  #columns: Column[];
  #widths: number[];
  #headerDone = false;
  #fast: boolean;
  #writeRow: RowWriter;
  #scratch = new JsonBytes();

  /**
   * @param fast draw plain-ASCII rows directly (false: always through cli-table3)
   * @param withOptional show the optional columns (the NEW column of `--baseline`)
   * @param closes close records are reported: their figures must show at any width
   */
  constructor(width: number, fast = true, withOptional = false, closes = false) {
    ({ columns: this.#columns, widths: this.#widths } = fitColumns(width, withOptional, closes));
    this.#fast = fast;
    this.#writeRow = compileRow(this.#columns, this.#widths);
  }

  #table(): Table.Table {
    return new Table({
      colWidths: this.#widths.map((w) => w + 2),
      style: { head: [], border: [], "padding-left": 1, "padding-right": 1 },
      wordWrap: false,
    });
  }

  /**
   * The event's one line as bytes into `w` (no newline), when the header is out
   * and its cells are plain ASCII; else false, with nothing written (use render()).
   */
  writeRow(e: ConnEvent, w: JsonBytes): boolean {
    return this.#headerDone && this.#fast && this.#writeRow(e, w);
  }

  /** The lines for one event: the header before the first. */
  render(e: ConnEvent): string[] {
    const w = this.#scratch;
    w.pos = 0;
    if (this.writeRow(e, w)) return [UTF8.decode(w.buf.subarray(0, w.pos))];
    const row = this.#columns.map((c, i) => {
      const text = forTerminal(cellText(c, e));
      const w = this.#widths[i];
      return c.keepEnd && text.length > w ? keepEnd(text, w) : text;
    });
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

  /** The bottom border, once rows were printed. */
  footer(): string[] {
    if (!this.#headerDone) return [];
    const t = this.#table();
    t.push(this.#columns.map(() => ""));
    const all = t.toString().split("\n");
    return [all[all.length - 1]];
  }
}

/** The bordered table on a writer: rows as bytes into the batch, the rest (header, rare rows) as lines. */
export class TableOutput extends BatchRenderer {
  #table: TableRenderer;
  constructor(out: LineWriter, width: number, withOptional = false, closes = false) {
    super(out);
    this.#table = new TableRenderer(width, true, withOptional, closes);
  }
  event(e: ConnEvent): void {
    if (this.#table.writeRow(e, this.batch)) return this.endLine();
    // In order: the batch's rows go before lines written through the writer.
    this.handOver();
    const lines = this.#table.render(e);
    // Header lines carry no event: only the row counts if it is dropped.
    for (let i = 0; i < lines.length; i++) this.out.line(lines[i], i === lines.length - 1 ? 1 : 0);
  }
  override close(): void {
    this.handOver();
    for (const l of this.#table.footer()) this.out.line(l, 0);
    this.out.flush();
  }
}
