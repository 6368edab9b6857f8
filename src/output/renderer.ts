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
  /** Emitted events by status: [IPv4, IPv6] counts (no string built per event). */
  #byStatus = new Map<string, [number, number]>();

  constructor(renderer: Renderer) {
    super();
    this.#renderer = renderer;
  }

  push(e: ConnEvent): void {
    this.#guard(() => this.#renderer.event(e));
    this.#emitted++;
    let n = this.#byStatus.get(e.status);
    if (!n) this.#byStatus.set(e.status, n = [0, 0]);
    n[e.family === 6 ? 1 : 0]++;
  }

  /** Emitted events by `${status} ${family}`, for the metrics. */
  get byStatus(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [status, [v4, v6]] of this.#byStatus) {
      if (v4) out.set(`${status} 4`, v4);
      if (v6) out.set(`${status} 6`, v6);
    }
    return out;
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
