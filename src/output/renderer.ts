/**
 * Renderers over the one event schema.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
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

/**
 * The last stage: events into the renderer. A reader that went away (a closed
 * pipe) ends the run quietly; any other write failure ends it with one line.
 */
export class RenderStage extends Stage<ConnEvent, void> {
  readonly name = "output";
  #renderer: Renderer;
  #emitted = 0;
  /** Emitted events by `${status} ${family}`, for the metrics. */
  readonly byStatus = new Map<string, number>();

  constructor(renderer: Renderer) {
    super();
    this.#renderer = renderer;
  }

  push(e: ConnEvent): void {
    this.#guard(() => this.#renderer.event(e));
    this.#emitted++;
    const key = `${e.status} ${e.family}`;
    this.byStatus.set(key, (this.byStatus.get(key) ?? 0) + 1);
  }

  override flush(): void {
    this.#guard(() => this.#renderer.flush());
  }

  override close(): void {
    try {
      this.#renderer.close();
    } catch (e) {
      if (!(e instanceof Deno.errors.BrokenPipe)) this.ctx.log(`lightmon: cannot write output: ${e}`);
    }
  }

  #guard(write: () => void): void {
    try {
      write();
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) return this.ctx.stop(0);
      this.ctx.log(`lightmon: cannot write output: ${e instanceof Error ? e.message : e}`);
      this.ctx.stop(1);
    }
  }

  override counters(): Counters {
    return { emitted: this.#emitted };
  }
}
