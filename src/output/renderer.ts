/**
 * Renderers over the one event schema.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { toJson } from "./json.ts";
import type { LineWriter } from "./writer.ts";

/** An output: takes events, writes them out on flush. */
export interface Renderer {
  event(e: ConnEvent): void;
  /** Write what is buffered (once per batch of events). */
  flush(): void;
  /** Final output (a table's bottom border, a summary) and release resources. */
  close(): void;
}

/** JSON lines on a writer. */
export class JsonRenderer implements Renderer {
  #out: LineWriter;
  constructor(out: LineWriter) {
    this.#out = out;
  }
  event(e: ConnEvent): void {
    this.#out.line(toJson(e));
  }
  flush(): void {
    this.#out.flush();
  }
  close(): void {
    this.#out.flush();
  }
}

/** The terminal's width, or COLUMNS, or 160 when stdout is not a terminal. */
export function terminalWidth(): number {
  try {
    if (Deno.stdout.isTerminal()) return Deno.consoleSize().columns;
  } catch {
    // not a terminal
  }
  const c = Number(Deno.env.get("COLUMNS"));
  return Number.isInteger(c) && c > 40 ? c : 160;
}
