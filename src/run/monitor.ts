/**
 * The monitor's wiring: the keep predicate, baseline and learner, metrics, the
 * container sources, the stages, and the run. main.ts imports this module only
 * once the capture's load has started on its own thread, so that evaluating it
 * (and the npm modules behind it) overlaps the load.
 * @module
 */
import type { Options } from "../cli/options.ts";
import type { Loaded } from "../capture/loader.ts";
import { UsageError } from "../usage_error.ts";
import { dirOf, fileVersion, untrustedDirBecause } from "../config/trusted_file.ts";
import { keepPredicate, mentionsField } from "../filter/select.ts";
import { type ConnEvent, EVENT_KINDS, type EventKind } from "../event.ts";
import { runMonitor } from "./controller.ts";
import { SnapshotOverlap } from "../capture/snapshot.ts";
import { CLOCK_BOOTTIME, CLOCK_REALTIME, clockNs } from "../../ffi/libc.ts";
import { BootClock } from "../enrich/clock.ts";
import { EnrichStage } from "../enrich/enricher.ts";
import { Holdback } from "../enrich/holdback.ts";
import { ConnJoin, NameOnlyConnects } from "../enrich/join.ts";
import { DnsStage } from "../dns/stage.ts";
import { DnsCache, GRACE_S } from "../dns/cache.ts";
import { ProcessCache, ProcessTracking } from "../enrich/process_cache.ts";
import { UserNames } from "../enrich/users.ts";
import { FilterStage } from "../filter/select.ts";
import { CountLimit } from "../output/limit.ts";
import { Containers } from "../enrich/containers.ts";
import { DockerSource } from "../enrich/docker.ts";
import { PeerAddresses } from "../enrich/peers.ts";
import { CniReservations } from "../enrich/cni.ts";
import { CONTAINERD_TASKS } from "../enrich/state_files.ts";
import { JsonRenderer, type Renderer, RenderStage, terminalWidth } from "../output/renderer.ts";
import { LineWriter } from "../output/writer.ts";
import { Baseline } from "../baseline/rules.ts";
import { loadBaseline } from "../baseline/file.ts";
import { BaselineStage, DriftStage, Learner } from "../baseline/stage.ts";
import type { StopSignals } from "./signals.ts";
import { Progress, progressLine, wantsProgress } from "../output/progress.ts";

/** How soon connections the ring had no room for come out as flow records, reporting one by one. */
const OVERFLOW_INTERVAL_MS = 1000;
/** How often the baseline file is looked at for a new version (a ConfigMap's swap, an edit). */
const BASELINE_POLL_MS = 1000;
/** How often the CNI plugins' address reservations are read for changes. */
const CNI_SCAN_MS = 1000;
/** Every how many scans ended address claims are forgotten (they are kept KEEP_ENDED_MS). */
const PEER_EXPIRE_TICKS = 10;
/** How long an exited process's image is kept for the records that name it (ProcessCache's default). */
const PROCESS_GRACE_MS = 30_000;

/** What main.ts started before importing this module. */
export interface Start {
  /** The capture being loaded; runMonitor takes it over. */
  capture: Promise<Loaded>;
  /** Strategies that failed, filled as the load goes. */
  fallbacks: readonly string[];
  /** Set once runMonitor owns the capture: until then, main.ts closes it on any failure. */
  handedOver: boolean;
  /** The event kinds asked for (--events, less dns without DNS capture). */
  selected: ReadonlySet<EventKind>;
  trackConns: boolean;
  /** Which opening records the kernel sends (tracking): connect outcomes, accepts. */
  openings: { connects: boolean; accepts: boolean };
  /** The dports the kernel drops at connect(). */
  excludedDports: readonly number[];
  log: (line: string) => void;
  signals: StopSignals;
}

/** Wire the stages for `o` and run until stopped; resolves with the exit code. */
export async function monitor(o: Options, start: Start): Promise<number> {
  const { selected, trackConns } = start;
  // On a terminal, a bounded run that prints nothing until its end says how it goes.
  const progress = wantsProgress(o, Deno.stderr.isTerminal(), Deno.stdout.isTerminal())
    ? new Progress((b) => writeAll(Deno.stderr, b), () => terminalWidth(Deno.stderr, 80))
    : undefined;
  const log = progress ? progress.around(start.log) : start.log;
  const userKeep = keepPredicate(o);
  if (!o.baseline && (mentionsField(o.include, "novel") || mentionsField(o.exclude, "novel"))) {
    throw new UsageError("the novel filter field needs --baseline FILE (the flows that are not novel)");
  }
  // Everything asked for, or connects only (then nothing else arrives): no selection per event.
  // Flow records stand for the kinds asked for: the kernel counted no others.
  const keep = o.events.length === EVENT_KINDS.length || (o.events.length === 1 && o.events[0] === "connect")
    ? userKeep
    : (e: ConnEvent) => (selected.has(e.event) || e.event === "flow") && userKeep(e);
  // Both files are read before the run: a mistake in one is a usage error.
  const rules = o.baseline ? new Baseline() : undefined;
  const baselineVersion = { now: rules ? fileVersion(o.baseline) : "" };
  const baselineFile = rules && await loadBaseline(o.baseline, rules, "--baseline", false);
  const learner = o.learn ? await Learner.open(o.learn) : undefined;
  if (learner) checkWritableDir(o.learn);
  // Before Docker's list and the metrics server: a mistake in the output's settings is the only line said.
  const { renderer, describe: outputText } = await makeRenderer(o, log);
  const metrics = o.metricsAddr
    ? await (await import("../output/metrics.ts")).MetricsServer.open(o.metricsAddr)
    : undefined;
  // The remote end's name: who held the address then, as Docker (and CNI) gave it out.
  const peers = new PeerAddresses();
  const docker = new DockerSource(o.dockerRuntime, log, peers);
  let baselineWatch: ReturnType<typeof setInterval> | undefined;
  // Pods' addresses on a node without Docker: the CNI plugins' reservations, as they change.
  const cni = new CniReservations(peers, log);
  cni.watch();
  let peerTicks = 0;
  const peerWatch = setInterval(() => {
    const now = Date.now();
    cni.scan(now);
    if (++peerTicks % PEER_EXPIRE_TICKS === 0) peers.expire(now);
  }, CNI_SCAN_MS);
  let reading = false;
  try {
    await docker.start();
    const containers = new Containers(docker, {
      dockerData: o.dockerData,
      containerdTasks: CONTAINERD_TASKS,
      k8s: o.k8s,
    }, peers);
    const sources = [
      docker.connected
        ? `docker (${docker.size} containers)`
        : docker.absent
        ? `docker (no socket at ${o.dockerRuntime})`
        : "docker (not answering)",
    ];
    if (cni.size > 0) sources.push(`cni (${cni.size} addresses)`);
    if (existsDir(CONTAINERD_TASKS)) {
      sources.push(o.k8s ? "containerd CRI state" : "containerd CRI state when Docker is down");
    }
    // A flow names processes that may have exited an interval before it is read.
    const processes = new ProcessTracking(
      new ProcessCache(o.flowsMs > 0 ? { graceMs: Math.max(PROCESS_GRACE_MS, o.flowsMs + PROCESS_GRACE_MS) } : {}),
    );
    // A flow is named at its interval's end: an answer its connections used outlives its TTL by an interval.
    const dns = o.dns
      ? new DnsStage(
        selected.has("dns"),
        new DnsCache(undefined, undefined, undefined, GRACE_S + Math.ceil(o.flowsMs / 1000)),
      )
      : undefined;
    const holdback = new Holdback(o.metadataWaitMs, containers);
    docker.onUpdate = () => holdback.metadataArrived();
    const output = new RenderStage(renderer);
    const drift = rules || learner ? new DriftStage({ baselinePath: rules && o.baseline, learner }) : undefined;
    const marker = rules ? new BaselineStage(rules) : undefined;
    start.signals.onReload(() => reload(o, { marker, learner, renderer, log }));
    // A long-running agent has no restart to pick up a new baseline: a new version of the file
    // (kubelet swapping a ConfigMap's ..data, an edit renamed into place) is read as SIGHUP reads it.
    if (marker) {
      baselineWatch = setInterval(async () => {
        const v = fileVersion(o.baseline);
        if (v === baselineVersion.now || v === "" || reading) return;
        baselineVersion.now = v;
        reading = true;
        try {
          log(`lightmon: baseline ${o.baseline} changed: ${await reloadBaseline(o.baseline, marker)}`);
        } finally {
          reading = false;
        }
      }, BASELINE_POLL_MS);
    }
    if (metrics) {
      output.onClose = (e) => metrics.observeClose(e.durationMs, e.bytesSent, e.bytesReceived);
      output.onFlow = (e) => metrics.observeBytes(e.bytesSent, e.bytesReceived);
    }
    const join = trackConns ? new ConnJoin(undefined, undefined, start.openings.accepts) : undefined;
    // Connects sent only for the names their closes take (--events close): kept short of enrichment.
    const nameOnly = join && dns && start.openings.connects && !selected.has("connect")
      ? new NameOnlyConnects(join, dns.cache, processes.cache)
      : undefined;
    // The pipeline behind decode: each stage keeps its own counters.
    const stages = [
      ...(dns ? [dns] : []),
      processes,
      new SnapshotOverlap(),
      new EnrichStage({
        clock: new BootClock(() => clockNs(CLOCK_BOOTTIME), () => clockNs(CLOCK_REALTIME)),
        users: new UserNames(),
        processes: processes.cache,
        containers,
        names: dns?.cache,
        peers,
      }),
      holdback,
      ...(join ? [join] : []),
      ...(marker ? [marker] : []),
      new FilterStage(keep),
      ...(o.count > 0 ? [new CountLimit(o.count)] : []),
      ...(drift ? [drift] : []),
      output,
    ];
    const drifting = [
      ...(baselineFile ? [`baseline ${o.baseline} (${baselineFile.flows} flows)`] : []),
      ...(learner ? [`learning into ${o.learn} (${learner.flows} flows)`] : []),
    ];
    start.handedOver = true;
    const code = await runMonitor({
      capture: start.capture,
      fallbacks: start.fallbacks,
      ipv4Only: !o.ipv6,
      existing: o.existing,
      inboundExisting: selected.has("accept") || selected.has("close"),
      excludedDports: start.excludedDports,
      durationMs: o.durationMs,
      statsIntervalMs: o.statsIntervalMs,
      flowsIntervalMs: o.flowsMs > 0 ? o.flowsMs : OVERFLOW_INTERVAL_MS,
      exeOf: (pid, start, at) => (pid === 0 ? "" : processes.cache.lookup(pid, start, at).exe),
      stages,
      takeConnect: nameOnly && ((v, b) => nameOnly.take(v, b)),
      onRunning: metrics && ((state) =>
        metrics.serve(() => {
          const s = state();
          return {
            seen: s.ledger.seen,
            emitted: s.ledger.emitted,
            filtered: s.ledger.filtered - Number(s.kernel.kernelFiltered),
            kernelFiltered: s.kernel.kernelFiltered,
            byStatus: output.byStatus,
            lost: s.kernel.lost,
            dropped: s.ledger.dropped,
            processMisses: s.stages.processes.misses,
            containerMisses: s.stages.holdback.unnamed,
            processCacheEntries: s.stages.processes.entries,
            ringFill: s.ringFill,
            ringFillMax: s.ringFillMax,
            dockerConnected: docker.connected,
            strategy: s.strategy,
            dns: s.stages.dns && {
              udp: s.stages.dns.responses - s.stages.dns.overTcp,
              tcp: s.stages.dns.overTcp,
              malformed: s.stages.dns.malformed,
              cutShort: s.stages.dns["cut-short"],
              unanswered: s.stages.dns["unanswered.no-query"] + s.stages.dns["unanswered.other-question"] +
                s.stages.dns["unanswered.late"],
              lost: Number(s.kernel.dnsLost),
              entries: s.stages.dns.cacheEntries,
              evictions: s.stages.dns["cache-evictions"] + s.stages.dns["share-evictions"],
            },
            novelByStatus: drift?.novelByStatus,
            stages: s.stages,
            kernel: s.kernel,
          };
        })),
      describe: `${o.configRead ? `config ${o.configRead}; ` : ""}containers: ${
        sources.join(", ")
      }; output ${outputText}${o.flowsMs > 0 ? `; flows every ${intervalText(o.flowsMs)}, counted in the kernel` : ""}${
        metrics ? `; metrics on http://${o.metricsAddr}/metrics` : ""
      }${drifting.map((d) => `; ${d}`).join("")}`,
      log,
      signals: start.signals,
      progress: progress && {
        tick: (state, leftMs) =>
          progress.show(progressLine({
            events: state.ledger.emitted,
            flows: renderer.flowCount?.(),
            learned: learner && learner.saved + learner.pending,
            novel: rules && drift?.novelFlows,
            dropped: Object.values(state.ledger.dropped).reduce((a, b) => a + b, 0),
            leftMs,
          })),
        end: () => progress.end(),
      },
    });
    if (code !== 0) return code;
    if (drift?.saveFailed) return 1;
    // A bounded run (cron) alerts on its exit code; a service stopped by a signal is not failing.
    if (rules && drift && drift.novelFlows > 0 && (o.durationMs > 0 || o.count > 0)) return 3;
    return 0;
  } finally {
    clearInterval(baselineWatch);
    clearInterval(peerWatch);
    cni.close();
    await docker.close();
    await metrics?.close();
  }
}

/**
 * The renderer for -output, and how the start-up line names it; table, summary, log
 * and OTLP code (cli-table3, node:fs, the OpenTelemetry transformer) load only when
 * used: each costs start-up time.
 */
async function makeRenderer(
  o: Options,
  log: (line: string) => void,
): Promise<{ renderer: Renderer; describe: string }> {
  const out = new LineWriter(Deno.stdout, log);
  switch (o.output) {
    case "json":
      return { renderer: new JsonRenderer(out), describe: "json" };
    case "table": {
      const { TableOutput } = await import("../output/table.ts");
      const renderer = new TableOutput(out, terminalWidth(), o.baseline !== "", o.events.includes("close"));
      return { renderer, describe: "table" };
    }
    case "log": {
      const { LogRenderer, prepareLogDir, RotatingLog } = await import("../output/logfile.ts");
      prepareLogDir(o.logPath);
      return { renderer: new LogRenderer(new RotatingLog(o.logPath, o.logKeep, log)), describe: `log to ${o.logPath}` };
    }
    case "summary": {
      const { SummaryRenderer } = await import("../output/summary.ts");
      return {
        renderer: new SummaryRenderer(out, o.summaryFormat, log, undefined, o.baseline !== ""),
        describe: "summary",
      };
    }
    case "otlp": {
      const { openOtlp } = await import("../output/otlp_open.ts");
      return await openOtlp(o.otlpEndpoint, log, () => clockNs(CLOCK_REALTIME));
    }
  }
}

/**
 * SIGHUP: re-read the baseline (a mistake in it keeps the previous one, said),
 * save what was learned, reopen the log file. One line says what was done.
 */
async function reload(
  o: Options,
  r: { marker?: BaselineStage; learner?: Learner; renderer: Renderer; log: (line: string) => void },
): Promise<void> {
  const did: string[] = [];
  if (r.marker) did.push(`baseline ${o.baseline} ${await reloadBaseline(o.baseline, r.marker)}`);
  if (r.learner) {
    try {
      const n = r.learner.pending;
      await r.learner.save();
      did.push(`${n} learned flow${n === 1 ? "" : "s"} saved into ${o.learn}`);
    } catch (e) {
      did.push(`learned flows not saved (${e instanceof Error ? e.message : e})`);
    }
  }
  if (r.renderer.reopen) {
    r.renderer.reopen();
    did.push(`log file reopened in ${o.logPath}`);
  }
  r.log(`lightmon: SIGHUP: ${did.length ? did.join("; ") : "nothing to re-read"}`);
}

/**
 * Read the baseline again and judge by it from now on; a file that cannot be used
 * (a mistake, an untrusted owner or mode) leaves the previous rules, counted.
 * Says what was done.
 */
async function reloadBaseline(path: string, marker: BaselineStage): Promise<string> {
  try {
    const fresh = new Baseline();
    const file = await loadBaseline(path, fresh, "--baseline", false);
    marker.replace(fresh);
    return `re-read (${file?.flows ?? 0} flows)`;
  } catch (e) {
    marker.reloadFailed();
    return `not re-read, the previous one stays (${e instanceof Error ? e.message : e})`;
  }
}

/** The directory a --learn file is replaced in must exist: said at start, not after an hour of learning. */
function checkWritableDir(path: string): void {
  const dir = dirOf(path);
  if (!existsDir(dir)) throw new UsageError(`--learn ${path}: no directory ${dir}; create it first`);
  const why = untrustedDirBecause(dir);
  if (why) throw new UsageError(`--learn ${path}: refusing to write there: ${dir}: ${why}`);
}

function existsDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** An interval as it is typed: `500ms`, `10s`, `5m`, `1h`, or in ms when it is none of these. */
function intervalText(ms: number): string {
  for (const [unit, n] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

/** Write all of `b`, as a terminal takes it (a short write continues). */
function writeAll(f: { writeSync(b: Uint8Array): number }, b: Uint8Array): void {
  for (let off = 0; off < b.length;) off += f.writeSync(b.subarray(off));
}
