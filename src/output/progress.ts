/**
 * The progress line: on a terminal, a run bounded by `--duration` that prints
 * nothing until its end (`--output summary`, `--learn`) says how it goes on one
 * line of stderr, redrawn in place every second. Other stderr lines clear it
 * first and redraw it after, so the two never mix.
 * @module
 */

/** What the line says. */
export interface ProgressFigures {
  events: number;
  /** Distinct flows so far (the summary's), or undefined when nothing counts them. */
  flows?: number;
  /** Flows learned this run (`--learn`). */
  learned?: number;
  /** Distinct novel flows (`--baseline`). */
  novel?: number;
  dropped: number;
  leftMs: number;
}

/** `1,234` */
const count = (n: number) => n.toLocaleString("en-US");

/** `1h02m`, `4m05s`, `42s` */
export function timeLeft(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const pad = (n: number) => String(n).padStart(2, "0");
  if (h > 0) return `${h}h${pad(m)}m`;
  if (m > 0) return `${m}m${pad(sec)}s`;
  return `${sec}s`;
}

/** `lightmon: 12,345 events, 120 flows, 3 novel, 0 dropped, 42s left` */
export function progressLine(f: ProgressFigures): string {
  return [
    `lightmon: ${count(f.events)} events`,
    ...(f.flows === undefined ? [] : [`${count(f.flows)} flows`]),
    ...(f.learned === undefined ? [] : [`${count(f.learned)} learned`]),
    ...(f.novel === undefined ? [] : [`${count(f.novel)} novel`]),
    `${count(f.dropped)} dropped`,
    `${timeLeft(f.leftMs)} left`,
  ].join(", ");
}

const enc = new TextEncoder();
/** Back to the line's start, and erase to its end. */
const CLEAR = "\r\x1b[K";

/** The line on a terminal: drawn in place, cleared around other lines and at the end. */
export class Progress {
  #write: (b: Uint8Array) => void;
  #width: () => number;
  #shown = "";
  #ended = false;

  /** @param write writes to the terminal, whole (stderr's writeSync) */
  constructor(write: (b: Uint8Array) => void, width: () => number) {
    this.#write = write;
    this.#width = width;
  }

  /** Draw `line`, cut to the terminal's width so that it never wraps (a wrapped line cannot be redrawn). */
  show(line: string): void {
    if (this.#ended) return;
    const w = Math.max(10, this.#width() - 1);
    this.#shown = line.length > w ? line.slice(0, w - 1) + "…" : line;
    this.#emit(CLEAR + this.#shown);
  }

  /** Erase the line, for good. */
  end(): void {
    if (!this.#ended && this.#shown) this.#emit(CLEAR);
    this.#ended = true;
  }

  /** `log`, with the line erased before each line it writes and drawn again after. */
  around(log: (line: string) => void): (line: string) => void {
    return (line) => {
      if (!this.#shown || this.#ended) return log(line);
      this.#emit(CLEAR);
      log(line);
      this.#emit(this.#shown);
    };
  }

  /** A terminal that went away (a closed SSH session: EIO) ends the line, not the run. */
  #emit(text: string): void {
    if (this.#ended && text !== CLEAR) return;
    try {
      this.#write(enc.encode(text));
    } catch {
      this.#ended = true;
    }
  }
}

/**
 * Whether a run shows progress: bounded, stderr a terminal, and nothing else
 * drawn on it meanwhile: a summary (written at the end), an export (nothing on
 * the terminal), or a run that learns
 * while its events go elsewhere (log files, or a stdout that is not a terminal).
 */
export function wantsProgress(
  o: { durationMs: number; output: string; learn: string },
  stderrIsTerminal: boolean,
  stdoutIsTerminal: boolean,
): boolean {
  const quiet = o.output === "summary" || o.output === "otlp" ||
    (o.learn !== "" && (o.output === "log" || !stdoutIsTerminal));
  return stderrIsTerminal && o.durationMs > 0 && quiet;
}
