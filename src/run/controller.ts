/**
 * The run controller: loads the capture, starts the ring reader feeding the
 * pipeline, times the run, and on stop detaches everything and drains. It knows
 * nothing of what the stages do: the wiring (main.ts) hands it the stages.
 * @module
 */
import { RingConsumer } from "../../ffi/ring_consumer.ts";
import { pageSize } from "../../ffi/libc.ts";
import { DecodeStage } from "../capture/decode.ts";
import { loadCapture, readCounters, type Strategy } from "../capture/loader.ts";
import { existingConnections } from "../capture/snapshot.ts";
import type { COUNTERS } from "../capture/layout.ts";
import type { Counters, Stage, StageContext } from "../stage.ts";
import { type Ledger, Pipeline } from "./pipeline.ts";
import { after, every } from "./timers.ts";

/** What a run needs. */
export interface RunOptions {
  image: Uint8Array<ArrayBuffer>;
  strategies: readonly Strategy[];
  ipv4Only: boolean;
  /** Report connections established before the start (status existing). */
  existing: boolean;
  /** Destination ports -exclude drops outright: dropped in the kernel at connect(). */
  excludedDports: readonly number[];
  durationMs: number;
  statsIntervalMs: number;
  verbose: boolean;
  /** The stages behind decode, in order, ending with the output. */
  // deno-lint-ignore no-explicit-any
  stages: readonly Stage<any, any>[];
  /** Given a reader of the run's state once running (for --metrics-addr). */
  onRunning?: (state: () => RunState) => void;
  /** Names what else the start-up line should say (runtime sources, output). */
  describe: string;
  /** One line to stderr. */
  log: (line: string) => void;
}

/** The run's state, as the exit line, --stats and the metrics read it. */
export interface RunState {
  ledger: Ledger;
  /** Each stage's counters, by stage name. */
  stages: Record<string, Counters>;
  /** The kernel side's counters. */
  kernel: Record<(typeof COUNTERS)[number], bigint>;
  ringFill: number;
  ringFillMax: number;
  strategy: Strategy;
}

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

  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) Deno.exit(130); // second signal: leave now, the kernel detaches
    stop(0);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const fallbacks: string[] = [];
  const loaded = loadCapture({
    image: o.image,
    strategies: o.strategies,
    ipv4Only: o.ipv4Only,
    selfPid: Deno.pid,
    excludedDports: o.excludedDports,
    onFallback: (s, e) => {
      fallbacks.push(`${s}: ${"code" in e ? e.code : e.message}`);
      if (o.verbose) o.log(`lightmon: strategy ${s} failed: ${e.message}`);
    },
  });
  const { object, strategy } = loaded;
  const tried = fallbacks.length ? ` (unavailable: ${fallbacks.join(", ")})` : "";
  const mounted = loaded.mountedTracefs ? ", mounted tracefs on /sys/kernel/tracing" : "";
  const inKernel = o.excludedDports.length ? `, dropping dport ${o.excludedDports.join(",")} in the kernel` : "";

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
  const decode = new DecodeStage();
  const pipeline = new Pipeline<DataView>([decode, ...o.stages], ctx);
  let consumer: RingConsumer | undefined;
  const state = (): RunState => ({
    ledger: pipeline.ledger(),
    stages: pipeline.counters(),
    kernel: readCounters(object),
    ringFill: consumer?.lastFill ?? 0,
    ringFillMax: consumer?.maxFill ?? 0,
    strategy,
  });
  // Filtered counts both: events the kernel dropped (-exclude dport, -v6=false) and ours.
  const statsLine = () => {
    const s = state();
    const filtered = s.ledger.filtered + Number(s.kernel.kernelFiltered);
    return `lightmon: seen ${s.ledger.seen} emitted ${s.ledger.emitted} filtered ${filtered} lost ${s.kernel.lost}`;
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
      { onBatch: () => pipeline.flush() },
    );

    let existingNote = "";
    if (o.existing) {
      try {
        const found = existingConnections(object).filter((r) => !(o.ipv4Only && r.family === 6));
        decode.inject(found);
        existingNote = `, existing connections: ${found.length}`;
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
    o.log(`lightmon: capture ${strategy}${tried}${mounted}${inKernel}${existingNote}; ${o.describe}`);
    if (o.durationMs > 0) timers.push(after(o.durationMs, () => stop(0)));
    timers.push(every(HOUSEKEEPING_MS, () => pipeline.housekeeping()));
    let lastLost = 0n;
    timers.push(every(o.statsIntervalMs > 0 ? o.statsIntervalMs : 1000, () => {
      if (o.statsIntervalMs > 0) return o.log(statsLine());
      const lost = readCounters(object).lost;
      if (lost > lastLost) o.log(`lightmon: ${lost - lastLost} events lost (ring buffer full)`);
      lastLost = lost;
    }));

    await stopped;
  } finally {
    timers.forEach((cancel) => cancel());
    // Detach first so nothing new arrives, then drain what the ring still holds.
    object.detach();
    await consumer?.stop();
    pipeline.drain();
    pipeline.close();
    const line = statsLine();
    object.close();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    o.log(line);
  }
  return exitCode;
}
