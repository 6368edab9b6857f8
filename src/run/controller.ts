/**
 * The run controller: loads the capture, starts the ring reader feeding the
 * pipeline, times the run, and on stop detaches everything and drains. It knows
 * nothing of what the stages do: the wiring (main.ts) hands it the stages.
 * @module
 */
import { RingConsumer, type RingRecord } from "../../ffi/ring_consumer.ts";
import { CLOCK_BOOTTIME, clockNs, pageSize, releaseFreeMemory } from "../../ffi/libc.ts";
import { DecodeStage } from "../capture/decode.ts";
import {
  type IncludedPorts,
  type KernelCounters,
  type Loaded,
  readCounters,
  type Strategy,
} from "../capture/loader.ts";
import { existingConnections, MAX_EXISTING, MAX_EXISTING_PER_UID } from "../capture/snapshot.ts";
import { CgroupCache } from "../capture/cgroups.ts";
import { type ExeOf, FlowStage, FlowTables } from "../capture/flows.ts";
import type { Counters, Stage, StageContext } from "../stage.ts";
import { type Ledger, Pipeline } from "./pipeline.ts";
import { after, every } from "./timers.ts";
import type { StopSignals } from "./signals.ts";

/** What a run needs. */
export interface RunOptions {
  /** The capture being loaded (loadCapture): main.ts starts it early, so that its own start-up overlaps. */
  capture: Promise<Loaded>;
  /** The strategies that failed before the one loaded, with why (filled by the time `capture` resolves). */
  fallbacks: readonly string[];
  ipv4Only: boolean;
  /** Report connections established before the start (status existing). */
  existing: boolean;
  /** The start-up snapshot reports accepted connections too. */
  inboundExisting: boolean;
  /** Destination ports -exclude drops outright: dropped in the kernel at connect(). */
  excludedDports: readonly number[];
  durationMs: number;
  statsIntervalMs: number;
  /**
   * How often the kernel's flow tables are read: the --flows interval (every
   * connection is counted there), or, reporting connections one by one, how soon
   * those the ring had no room for come out as flow records.
   */
  flowsIntervalMs: number;
  /** A process's program, for flow records of one program in one workload to merge. */
  exeOf?: ExeOf;
  /** Given each connect record before it is decoded; one it takes goes no further (NameOnlyConnects). */
  takeConnect?: (v: DataView, offset: number) => boolean;
  /** The stages behind decode, in order, ending with the output. */
  // deno-lint-ignore no-explicit-any
  stages: readonly Stage<any, any>[];
  /** Given a reader of the run's state once running (for --metrics-addr). */
  onRunning?: (state: () => RunState) => void;
  /** Names what else the start-up line should say (runtime sources, output). */
  describe: string;
  /** One line to stderr. */
  log: (line: string) => void;
  /** SIGINT and SIGTERM, listened for since main.ts started: the first stops the run. */
  signals: StopSignals;
  /** A progress line, told the run's state every second from the start-up line on, and ended before the exit line. */
  progress?: { tick(state: RunState, leftMs: number): void; end(): void };
}

/** The run's state, as the exit line, --stats and the metrics read it. */
export interface RunState {
  /** The whole run's ledger: the kernel's drops and filtering included. */
  ledger: Ledger;
  /** Each stage's counters, by stage name. */
  stages: Record<string, Counters>;
  /** The kernel side's counters. */
  kernel: KernelCounters;
  ringFill: number;
  ringFillMax: number;
  strategy: Strategy;
}

/**
 * The user-space ledger joined with the kernel's: events the kernel filtered are
 * seen and filtered; connection events the ring had no room for (`ring-full`) and
 * close records the kernel's connection table had no room to track (`conns-full`)
 * are seen and dropped; so are connection records --flows had no room for in the
 * flow table (`flows-full`). A record counted into a flow is in that flow record's
 * counts, and the flow record is in the ledger. So `seen = emitted + filtered + dropped` holds for the whole
 * run, and each attempt counts once: a connect with no room in the stash is
 * reported at connect() (`unstashed`), and the outcome that then finds no entry
 * (`stashMiss`, as one begun before the start) is not another attempt.
 */
export function runLedger(user: Ledger, kernel: KernelCounters): Ledger {
  const kernelDropped = {
    "ring-full": Number(kernel.lost),
    "conns-full": Number(kernel.connsFull),
    "flows-full": Number(kernel.flowsFull),
  };
  const kernelFiltered = Number(kernel.kernelFiltered);
  const dropped = { ...kernelDropped, ...user.dropped };
  return {
    seen: user.seen + kernelFiltered + Object.values(kernelDropped).reduce((a, b) => a + b, 0),
    emitted: user.emitted,
    filtered: user.filtered + kernelFiltered,
    dropped,
  };
}

/**
 * `seen S emitted E filtered F dropped D (cause n, ...)`, naming the causes that
 * dropped any, then `; ` and the notable counters that are not zero
 * (`join forgotten 3, kernel unstashed 120`).
 */
export function ledgerLine(l: Ledger, notable: readonly [string, number][] = []): string {
  const causes = Object.entries(l.dropped).filter(([, n]) => n > 0);
  const total = causes.reduce((a, [, n]) => a + n, 0);
  const why = causes.length ? ` (${causes.map(([c, n]) => `${c} ${n}`).join(", ")})` : "";
  const notes = notable.length ? `; ${notable.map(([c, n]) => `${c} ${n}`).join(", ")}` : "";
  return `lightmon: seen ${l.seen} emitted ${l.emitted} filtered ${l.filtered} dropped ${total}${why}${notes}`;
}

/**
 * The kernel's counters that are not in the ledger but say something was not as
 * it should be: connects reported at connect() for want of stash room, outcomes of
 * connects lightmon did not see begin, process records and DNS packets lost,
 * events whose cgroup names were left out because root did not make that cgroup,
 * connection records counted into flows because the ring was busy, records
 * counted into their owner's fold because its share of the flow table was used up,
 * and runs of lightmon's programs the kernel skipped (one already running on that
 * CPU: a state change in a softirq that interrupted the program is not seen).
 */
const KERNEL_NOTABLE = {
  unstashed: "unstashed",
  stashMiss: "stash-miss",
  lostProcess: "process-lost",
  dnsLost: "dns-lost",
  cgroupForeign: "cgroup-not-roots",
  asFlows: "as-flows",
  folded: "flows-folded",
  recursionMissed: "recursion-missed",
} as const;

function kernelNotable(kernel: KernelCounters): [string, number][] {
  return Object.entries(KERNEL_NOTABLE)
    .filter(([k]) => kernel[k as keyof typeof KERNEL_NOTABLE] > 0n)
    .map(([k, name]) => [`kernel ${name}`, Number(kernel[k as keyof typeof KERNEL_NOTABLE])]);
}

/** What the start-up line says of the dport exclusions the kernel applies. */
function kernelNote(inKernel: readonly number[], wanted: number, included?: IncludedPorts): string {
  const listed = (name: string, ports: readonly number[]) =>
    ports.length === 0 ? [] : [ports.length <= 8 ? `${name} ${ports.join(",")}` : `${ports.length} ${name}s`];
  const keeping = included ? [...listed("rport", included.remote), ...listed("lport", included.local)] : [];
  const keep = keeping.length ? `, keeping only ${keeping.join(" and ")} in the kernel` : "";
  if (inKernel.length === 0) return keep;
  const rest = wanted - inKernel.length;
  const more = rest > 0 ? ` (${rest} more in user space: the kernel's table holds ${inKernel.length})` : "";
  return `, dropping ${listed("dport", inKernel)[0]} in the kernel${more}${keep}`;
}

/** How long the output may take to write what is queued once the run stops. */
const FINAL_WRITE_MS = 2000;
const HOUSEKEEPING_MS = 5000;

/** Run until stopped; resolves with the exit code. */
export async function runMonitor(o: RunOptions): Promise<number> {
  let exitCode = 0;
  let stopping = false;
  let resolveStop!: () => void;
  const stopped = new Promise<void>((r) => (resolveStop = r));
  const stop = (code = 0) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    resolveStop();
  };

  o.signals.onStop(() => stop(0));
  const loaded = await o.capture;
  const { object, strategy } = loaded;
  const tried = o.fallbacks.length ? ` (unavailable: ${o.fallbacks.join(", ")})` : "";
  const mounted = loaded.mountedTracefs ? ", mounted tracefs on /sys/kernel/tracing" : "";
  const inKernel = kernelNote(loaded.kernelDports, o.excludedDports.length, loaded.kernelIncluded);

  let flushQueued = false;
  const ctx: StageContext = {
    log: o.log,
    stop,
    flushSoon: () => {
      if (flushQueued) return;
      flushQueued = true;
      queueMicrotask(() => {
        flushQueued = false;
        pipeline.flush();
      });
    },
  };
  // Records name their task's cgroup by key; its names are read from the kernel's table once.
  const cgroups = new CgroupCache((key, value) => object.lookupElem("lm_cgroups", key, value));
  const decode = new DecodeStage(o.takeConnect, cgroups);
  const flowStage = new FlowStage(o.exeOf);
  const pipeline = new Pipeline<RingRecord>([decode, flowStage, ...o.stages], ctx);
  let listened: ReadonlySet<number> = new Set();
  const flows = new FlowTables(object, () => clockNs(CLOCK_BOOTTIME), cgroups, (port) => listened.has(port));
  let consumer: RingConsumer | undefined;
  const state = (): RunState => {
    const kernel = readCounters(object);
    return {
      ledger: runLedger(pipeline.ledger(), kernel),
      stages: pipeline.counters(),
      kernel,
      ringFill: consumer?.lastFill ?? 0,
      ringFillMax: consumer?.maxFill ?? 0,
      strategy,
    };
  };
  const statsLine = () => {
    const s = state();
    return ledgerLine(s.ledger, [...kernelNotable(s.kernel), ...pipeline.notable()]);
  };
  const timers: (() => void)[] = [];
  // From here on every exit path detaches and closes what was loaded.
  try {
    consumer = new RingConsumer(
      object.mapFd("lm_events"),
      object.mapMaxEntries("lm_events"),
      pageSize(),
      (v) => pipeline.push(v),
      (msg) => {
        o.log(`lightmon: ring buffer reader failed: ${msg}`);
        stop(1);
      },
      { onBatch: () => pipeline.flush(), hold: () => pipeline.backlogged() },
    );

    let existingNote = "";
    if (o.existing) {
      try {
        const existing = existingConnections(object, o.inboundExisting, cgroups);
        const found = existing.found.filter((r) => !(o.ipv4Only && r.family === 6));
        listened = existing.listenedPorts;
        decode.inject(found);
        const more = existing.skipped > 0
          ? ` (${existing.skipped} more not listed: at most ${MAX_EXISTING} are, ${MAX_EXISTING_PER_UID} per user)`
          : "";
        existingNote = `, existing connections: ${found.length}${more}`;
        pipeline.flush();
      } catch (e) {
        o.log(
          `lightmon: cannot list existing connections (${
            e instanceof Error ? e.message : e
          }); new ones are still reported`,
        );
      }
    }
    o.onRunning?.(state);
    const dns = loaded.dns === undefined
      ? ""
      : "root" in loaded.dns
      ? `; dns names from ${loaded.dns.root}${
        loaded.dns.perNetns ? "" : " (per host: this kernel cannot tell a packet's network namespace)"
      }${loaded.dns.senders ? "" : " (queries without their sender: this kernel cannot name the task that sent one)"}`
      : `; no dns names (${loaded.dns.error})`;
    o.log(`lightmon: capture ${strategy}${tried}${mounted}${inKernel}${existingNote}${dns}; ${o.describe}`);
    releaseFreeMemory(); // libbpf freed the kernel's BTF after loading: return it to the system
    if (o.durationMs > 0) timers.push(after(o.durationMs, () => stop(0)));
    const progress = o.progress;
    if (progress) {
      const until = performance.now() + o.durationMs;
      const tick = () => progress.tick(state(), until - performance.now());
      tick();
      timers.push(every(1000, tick));
    }
    timers.push(every(HOUSEKEEPING_MS, () => pipeline.housekeeping()));
    let collecting = false;
    timers.push(every(o.flowsIntervalMs, () => {
      if (collecting || stopping) return; // a slow read is not overtaken
      collecting = true;
      flows.collect()
        .then((found) => {
          if (stopping) return flowStage.hold(found); // the final read sends them, after the ring's last records
          flowStage.inject(found);
          pipeline.flush();
        })
        .catch((e) => {
          // Stopping, the final read (both tables, the programs detached) takes what this one did not.
          if (!stopping) o.log(`lightmon: cannot read the kernel's flow table (${e instanceof Error ? e.message : e})`);
        })
        .finally(() => (collecting = false));
    }));
    let lastLost = 0n;
    let lastLostProcess = 0n;
    let lastAsFlows = 0n;
    timers.push(every(o.statsIntervalMs > 0 ? o.statsIntervalMs : 1000, () => {
      if (o.statsIntervalMs > 0) return o.log(statsLine());
      const { lost, lostProcess, asFlows, flowsFull } = readCounters(object);
      const gone = lost + flowsFull;
      if (gone > lastLost) o.log(`lightmon: ${gone - lastLost} events lost (ring buffer and flow table full)`);
      if (asFlows > lastAsFlows) {
        o.log(
          `lightmon: ${
            asFlows - lastAsFlows
          } connection records counted into flows (lightmon is behind): they come out as flow records`,
        );
      }
      lastAsFlows = asFlows;
      if (lostProcess > lastLostProcess) {
        o.log(
          `lightmon: ${lostProcess - lastLostProcess} process records lost (ring buffer full): names may be missing`,
        );
      }
      lastLost = gone;
      lastLostProcess = lostProcess;
    }));

    await stopped;
  } finally {
    timers.forEach((cancel) => cancel());
    // Erased before the output's last words (a summary on the same terminal) and the exit line.
    o.progress?.end();
    // Detach first so nothing new arrives, then drain what the ring still holds.
    object.detach();
    consumer?.stop();
    try {
      // What the programs counted since the last read (both tables: nothing writes them now).
      flowStage.inject([...flowStage.held(), ...flows.collectAll()]);
    } catch (e) {
      o.log(`lightmon: cannot read the kernel's flow table (${e instanceof Error ? e.message : e})`);
    }
    pipeline.drain();
    pipeline.close();
    await pipeline.settle(FINAL_WRITE_MS);
    const line = statsLine();
    object.close();
    o.log(line);
  }
  return exitCode;
}
