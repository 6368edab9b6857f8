/**
 * `-output log` (the original's `logfile`): one logrus-style JSON object per line,
 * with the original's keys and value types, in hourly files
 * `<dir>/lightmon.log.YYYYmmddHH00` of which the newest `keep` are kept.
 *
 * A write that fails (full disk, removed directory) drops that batch whole, says so
 * once on stderr and truncates away any partial line; writing resumes by itself
 * when it can, and says so.
 *
 * lightmon writes these files as root, so a file is opened without following a
 * symlink (O_NOFOLLOW) or blocking on a planted FIFO (O_NONBLOCK), created
 * exclusively when new, and kept only if it is a regular file of ours, forced to
 * 0640. A directory others can write is refused unless it is sticky (then nobody
 * else can replace our files in it).
 * @module
 */
import fs from "node:fs";
import type { ConnEvent } from "../event.ts";
import { FIELDS } from "../fields.ts";
import type { Renderer } from "./renderer.ts";
import { jsonString } from "../text/sanitize.ts";
import { pad2 } from "../text/time.ts";
import { UsageError } from "../usage_error.ts";
import { untrustedDirBecause } from "../config/trusted_file.ts";

const { O_WRONLY, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = fs.constants;
const FILE_MODE = 0o640;

/** Why lightmon must not write logs in `dir` (which exists), or undefined when it may. */
export function unsafeLogDir(dir: string, euid = Deno.uid() ?? 0): string | undefined {
  const why = untrustedDirBecause(dir, [0, euid]);
  return why && `${why}; use a directory only root can write (e.g. /var/log/lightmon)`;
}

/** Create `dir` if missing (0750) and check it; a UsageError names what is wrong. */
export function prepareLogDir(dir: string): void {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o750 });
  } catch (e) {
    throw new UsageError(`-log_path ${dir}: cannot create it (${e instanceof Error ? e.message.split(":")[0] : e})`);
  }
  const why = unsafeLogDir(dir);
  if (why) throw new UsageError(`-log_path ${dir}: refusing to write logs there: ${why}`);
}

/**
 * Open `path` for appending, never through a symlink and never blocking: new files
 * exclusively, existing ones only if they are regular files owned by `euid`. The
 * mode is forced to 0640 either way.
 */
export function openLogFile(path: string, euid = Deno.uid() ?? 0): number {
  const flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK;
  let fd: number;
  try {
    fd = fs.openSync(path, flags | O_CREAT | O_EXCL, FILE_MODE);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    try {
      fd = fs.openSync(path, flags);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ELOOP") throw new NotOurs(path, "a symlink");
      if (code === "ENXIO") throw new NotOurs(path, "a FIFO");
      throw e;
    }
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new NotOurs(path, "not a regular file");
    if (st.uid !== euid) throw new NotOurs(path, `uid ${st.uid}'s`);
    fs.fchmodSync(fd, FILE_MODE);
    return fd;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** A name in the log directory that something not lightmon's holds: never written through, never pruned. */
export class NotOurs extends Error {
  constructor(readonly path: string, readonly what: string) {
    super(`${path} is ${what}, not lightmon's`);
  }
}

/** Other names tried for an hour whose file someone else holds: `<hour>.1` … `<hour>.8`. */
const ALTERNATES = 8;
const LOG_NAME = /^lightmon\.log\.\d{12}(?:\.\d+)?$/;

/** The file name for the hour that contains `ms` (local time). */
export function logFileName(ms: number): string {
  const d = new Date(ms);
  return `lightmon.log.${d.getFullYear()}${pad2(d.getMonth() + 1)}${pad2(d.getDate())}${pad2(d.getHours())}00`;
}

/** A key of the log line and how to write its value for an event. */
interface LogKey {
  prefix: string;
  value: (e: ConnEvent) => string | number | boolean;
  when?: (e: ConnEvent) => boolean;
}

/** The registry's log keys plus logrus's own, sorted as logrus sorts them. */
const LOG_KEYS: readonly LogKey[] = [
  ...FIELDS.filter((f) => f.log).map((f) => ({
    key: f.log!.key,
    value: f.log!.value ?? ((e: ConnEvent) => String(f.get(e))),
    when: f.log!.when,
  })),
  { key: "level", value: () => "info", when: undefined },
  { key: "msg", value: () => "", when: undefined },
]
  .sort((a, b) => (a.key < b.key ? -1 : 1))
  .map(({ key, value, when }) => ({ prefix: `,${JSON.stringify(key)}:`, value, when }));

/**
 * One event in the original's line format. Keys are sorted as logrus sorts them;
 * `conatiner` keeps the original's spelling so existing pipelines keep parsing.
 */
export function logLine(e: ConnEvent): string {
  let s = "";
  for (const k of LOG_KEYS) {
    if (k.when && !k.when(e)) continue;
    const v = k.value(e);
    s += k.prefix + (typeof v === "string" ? jsonString(v) : String(v));
  }
  return "{" + s.slice(1) + "}";
}

/** Hourly files in a directory, pruned to the newest `keep`. */
export class RotatingLog {
  #dir: string;
  #keep: number;
  #now: () => number;
  #log: (line: string) => void;
  #fd: number | undefined;
  #name = "";
  /** The hour the current file is for (its name, or the name it stands in for). */
  #hour = "";
  #said = new Set<string>();
  #size = 0;
  #failing = false;
  #dropped = 0;
  #droppedTotal = 0;
  #checkedAt = 0;
  #enc = new TextEncoder();

  constructor(dir: string, keep: number, log: (line: string) => void, now = () => Date.now()) {
    this.#dir = dir;
    this.#keep = Math.max(1, keep);
    this.#log = log;
    this.#now = now;
  }

  /** The current file's path. */
  get path(): string {
    return `${this.#dir}/${this.#name}`;
  }

  #open(name: string): void {
    this.#closeFile();
    Deno.mkdirSync(this.#dir, { recursive: true, mode: 0o750 });
    const why = unsafeLogDir(this.#dir);
    if (why) throw new Error(`refusing ${this.#dir}: ${why}`);
    // A name someone else took (a file, link or FIFO planted in a sticky directory) is passed
    // over for the next: events keep being written, and it is said where.
    for (let i = 0;; i++) {
      const candidate = i === 0 ? name : `${name}.${i}`;
      try {
        this.#fd = openLogFile(`${this.#dir}/${candidate}`);
        if (i > 0) this.#sayOnce(`lightmon: log: writing ${this.#dir}/${candidate} instead (${this.#taken})`);
        this.#name = candidate;
        break;
      } catch (e) {
        if (!(e instanceof NotOurs) || i >= ALTERNATES) throw e;
        this.#taken = e.message;
      }
    }
    this.#hour = name;
    this.#size = fs.fstatSync(this.#fd!).size;
    this.#prune();
  }

  #taken = "";

  #sayOnce(line: string): void {
    if (this.#said.has(line)) return;
    if (this.#said.size >= 64) this.#said.clear(); // a new name each hour: bounded
    this.#said.add(line);
    this.#log(line);
  }

  #closeFile(): void {
    if (this.#fd === undefined) return;
    try {
      fs.closeSync(this.#fd);
    } catch { /* already gone */ }
    this.#fd = undefined;
  }

  /**
   * Keep the newest files. The one being written is always kept, whatever its name
   * says: after the clock steps back it sorts oldest, and deleting it would lose
   * every event written since.
   */
  #prune(): void {
    const names: string[] = [];
    const foreign: string[] = [];
    const euid = Deno.uid() ?? 0;
    for (const d of Deno.readDirSync(this.#dir)) {
      if (d.name === this.#name || !LOG_NAME.test(d.name)) continue;
      // Only files of ours: root may delete anyone's, even in a sticky directory, and a
      // name planted there must not make it delete what is not lightmon's. In a sticky
      // directory nobody else can replace a file of ours, so what lstat says stays true.
      let st: Deno.FileInfo;
      try {
        st = Deno.lstatSync(`${this.#dir}/${d.name}`);
      } catch {
        continue;
      }
      if (st.isFile && st.uid === euid) names.push(d.name);
      else foreign.push(d.name);
    }
    if (foreign.length) {
      this.#sayOnce(
        `lightmon: log: leaving ${foreign.length} file(s) in ${this.#dir} named like logs that are not lightmon's ` +
          `(${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", ..." : ""})`,
      );
    }
    names.sort();
    for (const old of names.slice(0, Math.max(0, names.length - (this.#keep - 1)))) {
      try {
        Deno.removeSync(`${this.#dir}/${old}`);
      } catch { /* someone else removed it */ }
    }
  }

  /** Open the right file for now: a new hour, or the current one vanished. */
  #ensure(): void {
    const now = this.#now();
    const name = logFileName(now);
    if (this.#fd === undefined || name !== this.#hour) return this.#open(name);
    // A deleted file or directory would swallow writes silently: look now and then.
    if (now - this.#checkedAt > 2000) {
      this.#checkedAt = now;
      try {
        Deno.statSync(this.path);
      } catch {
        this.#open(name);
      }
    }
  }

  /** Append whole lines; on failure none of them stays in the file. */
  write(lines: string[]): void {
    if (lines.length === 0) return;
    const bytes = this.#enc.encode(lines.join("\n") + "\n");
    let written = 0;
    try {
      this.#ensure();
      while (written < bytes.length) written += fs.writeSync(this.#fd!, bytes, written);
      this.#size += bytes.length;
      if (this.#failing) {
        this.#failing = false;
        this.#log(`lightmon: log: writing ${this.path} again; ${this.#dropped} events were dropped`);
        this.#dropped = 0;
      }
    } catch (e) {
      // No half-written line stays behind. Always: a failed write may have written
      // part of the batch without saying how much.
      try {
        if (this.#fd !== undefined) fs.ftruncateSync(this.#fd, this.#size);
      } catch { /* the file is gone */ }
      this.#dropped += lines.length;
      this.#droppedTotal += lines.length;
      if (!this.#failing) {
        this.#failing = true;
        const why = e instanceof Error ? e.message.split(/: |, /)[0] : String(e);
        this.#log(
          `lightmon: log: cannot write ${this.#dir}/${logFileName(this.#now())} (${why}); dropping events until it can`,
        );
      }
      // Reopen on the next write: the directory may come back.
      this.#closeFile();
    }
  }

  /** Events dropped since writing last failed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Events dropped over the whole run. */
  get droppedTotal(): number {
    return this.#droppedTotal;
  }

  /** Open the file anew at the next write (SIGHUP: logrotate moved it away). */
  reopen(): void {
    this.#closeFile();
  }

  close(): void {
    this.#closeFile();
  }
}

/** The `log` output. */
export class LogRenderer implements Renderer {
  #out: RotatingLog;
  #lines: string[] = [];
  constructor(out: RotatingLog) {
    this.#out = out;
  }
  event(e: ConnEvent): void {
    this.#lines.push(logLine(e));
  }
  flush(): void {
    const lines = this.#lines;
    this.#lines = [];
    this.#out.write(lines);
  }
  close(): void {
    this.flush();
    this.#out.close();
  }
  reopen(): void {
    this.flush();
    this.#out.reopen();
  }
  /** Writes are synchronous (a local file): nothing is left to finish. */
  settle(): Promise<void> {
    return Promise.resolve();
  }
  drops(): Readonly<Record<string, number>> {
    return { "output-failed": this.#out.droppedTotal };
  }
  readonly closed = false;
}
