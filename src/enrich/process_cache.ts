/**
 * Process identity for connection events: exe and argv recorded at exec time by
 * the kernel, so a process that connects and exits at once is still named. For
 * processes that started before lightmon, /proc is the fallback.
 *
 * Entries are keyed by pid and carry the process start time, so a pid reused by a
 * new process is never attributed to the old one. Exited processes stay for a
 * grace period (outcomes of their connects can arrive after they exit), and the
 * cache never holds more than `maxEntries`.
 * @module
 */
import type { RawConnect, RawExec, RawRecord } from "../capture/decode.ts";
import { type Counters, Stage } from "../stage.ts";
import type { ProcSource } from "../event.ts";

/** What is known of a process. */
export interface ProcInfo {
  exe: string;
  args: string[];
  source: ProcSource;
}

/** One program image of a process, and since when it runs. */
interface Image extends ProcInfo {
  /** CLOCK_BOOTTIME ns of the exec (or fork) that started this image; 0 when unknown (/proc). */
  sinceNs: bigint;
}

interface Entry extends Image {
  startNs: bigint;
  /** The images before this one, newest first (a connect may complete after an exec). */
  before: Image[];
  /** When the exit was seen; undefined while the process runs. */
  exitedAt?: number;
}

/** Earlier images kept per process: enough for a connect pending across a few execs. */
const MAX_EARLIER_IMAGES = 3;

/** Reads what /proc says about a pid; replaceable in tests. */
export interface ProcReader {
  /** Start time in CLOCK_BOOTTIME ns (from /proc/<pid>/stat), or undefined. */
  startNs(pid: number): bigint | undefined;
  exe(pid: number): string | undefined;
  cwd(pid: number): string | undefined;
  args(pid: number): string[] | undefined;
}

const CLK_TCK = 100n; // USER_HZ on every Linux ABI that matters

/** The most of argv read, as in the kernel's exec record (lm_exec_event.args). */
export const MAX_ARGS_BYTES = 512;

const utf8 = new TextDecoder();

/** At most `max` bytes of a file: a process controls how long its /proc files are. */
export function readBounded(path: string, max: number): Uint8Array | undefined {
  let f: Deno.FsFile | undefined;
  try {
    f = Deno.openSync(path, { read: true });
    const buf = new Uint8Array(max);
    let n = 0;
    while (n < max) {
      const got = f.readSync(buf.subarray(n));
      if (got === null) break;
      n += got;
    }
    return buf.subarray(0, n);
  } catch {
    return undefined;
  } finally {
    f?.close();
  }
}

/** NUL-separated argv; a last argument cut short by the bound is kept as far as it goes. */
export function splitArgs(raw: Uint8Array): string[] {
  const parts = utf8.decode(raw).split("\0");
  if (parts[parts.length - 1] === "") parts.pop();
  return parts;
}

/** The real /proc. */
export const procfs: ProcReader = {
  startNs(pid) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      // comm may contain spaces and parentheses: fields follow the last ')'.
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return BigInt(rest[19]) * (1_000_000_000n / CLK_TCK);
    } catch {
      return undefined;
    }
  },
  exe(pid) {
    try {
      return Deno.readLinkSync(`/proc/${pid}/exe`);
    } catch {
      return undefined;
    }
  },
  cwd(pid) {
    try {
      return Deno.readLinkSync(`/proc/${pid}/cwd`);
    } catch {
      return undefined;
    }
  },
  args(pid) {
    const raw = readBounded(`/proc/${pid}/cmdline`, MAX_ARGS_BYTES);
    return raw === undefined ? undefined : splitArgs(raw);
  },
};

/** /proc start times have clock-tick resolution: allow one tick and rounding. */
const START_SLACK_NS = 20_000_000n;

/** Join a possibly relative exec path onto the process's working directory. */
export function absolutePath(path: string, cwd: string | undefined): string {
  if (path.startsWith("/")) return path;
  if (!cwd) return "";
  const parts = `${cwd}/${path}`.split("/");
  const out: string[] = [];
  for (const p of parts) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return "/" + out.join("/");
}

/** The process cache. */
export class ProcessCache {
  #entries = new Map<number, Entry>();
  #proc: ProcReader;
  #graceMs: number;
  #maxEntries: number;
  #now: () => number;
  /** Lookups answered from /proc or not at all. */
  misses = 0;

  constructor(
    { proc = procfs, graceMs = 30_000, maxEntries = 65_536, now = () => performance.now() }: {
      proc?: ProcReader;
      graceMs?: number;
      maxEntries?: number;
      now?: () => number;
    } = {},
  ) {
    this.#proc = proc;
    this.#graceMs = graceMs;
    this.#maxEntries = maxEntries;
    this.#now = now;
  }

  /** Number of processes held. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Record an exec. The image it replaces is kept: a connect begun before the
   * exec (non-blocking, still in its handshake) belongs to the program that made it.
   */
  exec(r: RawExec): void {
    // The kernel gives the path as execve(2) got it; a relative one is resolved
    // against the working directory the kernel read at exec (or, if that walk was
    // cut short, /proc's while the process is still alive).
    const exe = r.filename.startsWith("/") ? r.filename : absolutePath(r.filename, r.cwd ?? this.#proc.cwd(r.pid));
    const old = this.#entries.get(r.pid);
    const before = old && old.startNs === r.procStartNs
      ? [{ exe: old.exe, args: old.args, source: old.source, sinceNs: old.sinceNs }, ...old.before]
        .slice(0, MAX_EARLIER_IMAGES)
      : [];
    this.#entries.delete(r.pid); // re-insert: Map order is our eviction order
    this.#entries.set(r.pid, { exe, args: r.args, source: "exec", startNs: r.procStartNs, sinceNs: r.tsNs, before });
    this.#evict();
  }

  /** A forked child runs its parent's program until it execs: it inherits the entry. */
  fork(pid: number, startNs: bigint, ppid: number, parentStartNs: bigint): void {
    const parent = this.#entries.get(ppid);
    if (!parent || parent.startNs !== parentStartNs) return;
    this.#entries.delete(pid);
    this.#entries.set(pid, {
      exe: parent.exe,
      args: parent.args,
      source: parent.source,
      startNs,
      sinceNs: startNs,
      before: [],
    });
    this.#evict();
  }

  /** Record an exit: the entry stays for the grace period. */
  exit(pid: number, startNs: bigint): void {
    const e = this.#entries.get(pid);
    if (e && e.startNs === startNs) e.exitedAt = this.#now();
  }

  /** Keep the bound: drop the least recently exec'd processes first. */
  #evict(): void {
    for (const pid of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(pid);
    }
  }

  /** Drop exited processes past their grace period; call it now and then. */
  sweep(): void {
    const now = this.#now();
    for (const [pid, e] of this.#entries) {
      if (e.exitedAt !== undefined && now - e.exitedAt >= this.#graceMs) this.#entries.delete(pid);
    }
  }

  /**
   * What process `pid` that started at `startNs` was running at `atNs` (the
   * connect(2), CLOCK_BOOTTIME; omitted: now). Falls back to /proc when the exec
   * was not seen, and says "unknown" rather than guess when /proc shows a
   * different process under that pid, or none, or when the process exec'd since
   * `atNs` and what it ran before is not known.
   */
  lookup(pid: number, startNs: bigint, atNs?: bigint): ProcInfo {
    const e = this.#entries.get(pid);
    if (e && e.startNs === startNs) {
      if (atNs === undefined || e.sinceNs <= atNs) return e;
      const earlier = e.before.find((i) => i.sinceNs <= atNs);
      if (earlier) return earlier;
      return UNKNOWN; // exec'd after the connect; the image that connected was never seen
    }
    this.misses++;
    const procStart = this.#proc.startNs(pid);
    const diff = procStart === undefined ? undefined : procStart - startNs;
    if (diff !== undefined && diff <= START_SLACK_NS && diff >= -START_SLACK_NS) {
      const info: Entry = {
        exe: this.#proc.exe(pid) ?? "",
        args: this.#proc.args(pid) ?? [],
        source: "proc",
        startNs,
        sinceNs: 0n,
        before: [],
      };
      this.#entries.set(pid, info);
      this.#evict();
      return info;
    }
    return UNKNOWN;
  }
}

const UNKNOWN: ProcInfo = Object.freeze({ exe: "", args: Object.freeze([]) as unknown as string[], source: "unknown" });

/** The stage that keeps the cache: exec, fork and exit records end here; connects go on. */
export class ProcessTracking extends Stage<RawRecord, RawConnect> {
  readonly name = "processes";
  readonly cache: ProcessCache;
  #execs = 0;
  #forks = 0;
  #exits = 0;

  constructor(cache: ProcessCache) {
    super();
    this.cache = cache;
  }

  push(r: RawRecord): void {
    switch (r.kind) {
      case "connect":
        return this.emit(r);
      case "exec":
        this.#execs++;
        return this.cache.exec(r);
      case "exit":
        this.#exits++;
        return this.cache.exit(r.pid, r.procStartNs);
      case "fork":
        this.#forks++;
        return this.cache.fork(r.pid, r.procStartNs, r.ppid, r.parentStartNs);
    }
  }

  override housekeeping(): void {
    this.cache.sweep();
  }

  override counters(): Counters {
    return {
      execs: this.#execs,
      forks: this.#forks,
      exits: this.#exits,
      entries: this.cache.size,
      misses: this.cache.misses,
    };
  }
}
