/**
 * One run of lightmon: load the capture, stream events through enrichment and
 * filtering into the renderer until a stop condition, then detach everything.
 * @module
 */
import { RingConsumer } from "../ffi/ring_consumer.ts";
import { pageSize } from "../ffi/libc.ts";
import { decodeRecord } from "./capture/decode.ts";
import { loadCapture, readCounters, type Strategy } from "./capture/loader.ts";
import { existingConnections } from "./capture/snapshot.ts";
import type { RawConnect } from "./capture/decode.ts";
import { BootClock } from "./enrich/clock.ts";
import type { Containers } from "./enrich/containers.ts";
import { enrich, fillContainer } from "./enrich/enricher.ts";
import { Holdback } from "./enrich/holdback.ts";
import { ProcessCache } from "./enrich/process_cache.ts";
import { UserNames } from "./enrich/users.ts";
import type { ConnEvent } from "./event.ts";
import type { Renderer } from "./output/renderer.ts";
import type { MetricsSnapshot } from "./output/metrics.ts";

/** What a run needs. */
export interface MonitorOptions {
  image: Uint8Array<ArrayBuffer>;
  strategies: readonly Strategy[];
  ipv4Only: boolean;
  /** Report connections established before the start (status existing). */
  existing: boolean;
  /** Destination ports -exclude drops outright: dropped in the kernel at connect(). */
  excludedDports: readonly number[];
  durationMs: number;
  count: number;
  statsIntervalMs: number;
  verbose: boolean;
  /** Returns true for events to emit. */
  keep: (e: ConnEvent) => boolean;
  renderer: Renderer;
  containers: Containers;
  /** Longest an event waits for its container's metadata (ms). */
  metadataWaitMs: number;
  /** Set to be told when container metadata arrives. */
  onContainerUpdate?: (f: () => void) => void;
  /** Given a reader of the counters once running (for --metrics-addr). */
  onMetrics?: (read: () => MetricsSnapshot) => void;
  /** Whether the Docker source is connected, for the metrics. */
  dockerConnected?: () => boolean;
  /** Names what else the start-up line should say (runtime sources, output). */
  describe: string;
  /** One line to stderr. */
  log: (line: string) => void;
}

/** Counts reported on exit. */
export interface RunCounts {
  seen: number;
  emitted: number;
  filtered: number;
  lost: bigint;
}

const HOUSEKEEPING_MS = 5000;
/** How long a new connection may duplicate one the start-up snapshot reported. */
const SNAPSHOT_OVERLAP_MS = 10_000;

const tuple = (r: RawConnect) => `${r.saddr}|${r.sport}|${r.daddr}|${r.dport}`;

/** Run until stopped; resolves with the exit code. */
export async function runMonitor(o: MonitorOptions): Promise<number> {
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

  const clock = new BootClock();
  const users = new UserNames();
  const processes = new ProcessCache();
  const counts: RunCounts = { seen: 0, emitted: 0, filtered: 0, lost: 0n };
  const byStatus = new Map<string, number>();
  let containerMisses = 0;
  const deps = { wallNs: (ns: bigint) => clock.wallNs(ns), users, processes, containers: o.containers };
  const release = (e: ConnEvent) => {
    if (stopping && o.count > 0 && counts.emitted >= o.count) return;
    if (e.containerId && !e.container) {
      fillContainer(e, o.containers.get(e.containerId));
      if (!e.container) containerMisses++;
    }
    if (!o.keep(e)) {
      counts.filtered++;
      return;
    }
    o.renderer.event(e);
    counts.emitted++;
    const key = `${e.status} ${e.family}`;
    byStatus.set(key, (byStatus.get(key) ?? 0) + 1);
    if (o.count > 0 && counts.emitted >= o.count) stop();
  };
  const ready = (e: ConnEvent) =>
    !e.containerId || e.container !== "" || o.containers.get(e.containerId) !== undefined ||
    !o.containers.expect(e.containerId, e.containerRuntime);
  const holdback = new Holdback(o.metadataWaitMs, ready, release, () => onBatch());
  o.onContainerUpdate?.(() => {
    if (holdback.size === 0) return;
    holdback.pump();
    onBatch();
  });
  // Connections opened between attaching and the snapshot appear in both: the
  // snapshot's record stands, the ring's is dropped.
  let snapshotted: Set<string> | undefined;
  const onRecord = (v: DataView) => {
    const r = decodeRecord(v);
    if (!r) return;
    if (r.kind === "exec") return processes.exec(r);
    if (r.kind === "exit") return processes.exit(r.pid, r.procStartNs);
    if (r.kind === "fork") return processes.fork(r.pid, r.procStartNs, r.ppid, r.parentStartNs);
    if (snapshotted && r.status === "established" && snapshotted.has(tuple(r))) return;
    counts.seen++;
    holdback.push(enrich(r, deps));
  };
  const onBatch = () => {
    try {
      o.renderer.flush();
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) return stop(0);
      o.log(`lightmon: cannot write output: ${e instanceof Error ? e.message : e}`);
      stop(1);
    }
  };
  // Filtered counts both: events the kernel dropped (-exclude dport, -v6=false) and ours.
  const statsLine = () => {
    const k = readCounters(object);
    counts.lost = k.lost;
    const filtered = counts.filtered + Number(k.kernelFiltered);
    return `lightmon: seen ${counts.seen} emitted ${counts.emitted} filtered ${filtered} lost ${counts.lost}`;
  };
  const timers: ReturnType<typeof setTimeout>[] = [];
  let consumer: RingConsumer | undefined;
  // From here on every exit path detaches and closes what was loaded.
  try {
    consumer = new RingConsumer(
      object.mapFd("lm_events"),
      object.mapMaxEntries("lm_events"),
      pageSize(),
      onRecord,
      (msg) => {
        o.log(`lightmon: ring buffer reader failed: ${msg}`);
        stop(1);
      },
      { onBatch },
    );

    let existingNote = "";
    if (o.existing) {
      try {
        const found = existingConnections(object).filter((r) => !(o.ipv4Only && r.family === 6));
        snapshotted = new Set(found.map(tuple));
        for (const r of found) {
          counts.seen++;
          holdback.push(enrich(r, deps));
        }
        existingNote = `, existing connections: ${found.length}`;
        onBatch();
      } catch (e) {
        o.log(
          `lightmon: cannot list existing connections (${
            e instanceof Error ? e.message : e
          }); new ones are still reported`,
        );
      }
    }
    const ring = consumer;
    o.onMetrics?.(() => {
      const k = readCounters(object);
      return {
        ...counts,
        byStatus,
        lost: k.lost,
        kernelFiltered: k.kernelFiltered,
        processMisses: processes.misses,
        containerMisses,
        processCacheEntries: processes.size,
        ringFill: ring.lastFill,
        ringFillMax: ring.maxFill,
        dockerConnected: o.dockerConnected?.() ?? false,
        strategy,
      };
    });
    o.log(`lightmon: capture ${strategy}${tried}${mounted}${inKernel}${existingNote}; ${o.describe}`);
    if (o.durationMs > 0) timers.push(setTimeout(() => stop(0), o.durationMs));
    timers.push(setInterval(() => {
      processes.sweep();
      clock.refresh();
    }, HOUSEKEEPING_MS));
    timers.push(setTimeout(() => (snapshotted = undefined), SNAPSHOT_OVERLAP_MS));
    let lastLost = 0n;
    timers.push(setInterval(() => {
      const line = statsLine();
      if (o.statsIntervalMs > 0) o.log(line);
      else if (counts.lost > lastLost) o.log(`lightmon: ${counts.lost - lastLost} events lost (ring buffer full)`);
      lastLost = counts.lost;
    }, o.statsIntervalMs > 0 ? o.statsIntervalMs : 1000));

    await stopped;
  } finally {
    timers.forEach(clearInterval);
    // Detach first so nothing new arrives, then drain what the ring still holds.
    object.detach();
    await consumer?.stop();
    holdback.drain();
    onBatch();
    try {
      o.renderer.close();
    } catch (e) {
      if (!(e instanceof Deno.errors.BrokenPipe)) o.log(`lightmon: cannot write output: ${e}`);
    }
    const line = statsLine();
    object.close();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    o.log(line);
  }
  return exitCode;
}
