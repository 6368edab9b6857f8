/**
 * lightmon's entry point: options, preflight checks, then the monitor. Bad input
 * and missing kernel features end here as one line on stderr and exit code 2.
 * @module
 */
import { BpfError } from "../ffi/errno.ts";
import { LibbpfMissingError, libbpfVersion, setLogSink } from "../ffi/libbpf.ts";
import { NoStrategyError, probeStrategies } from "./capture/loader.ts";
import { DEFAULTS, helpText, type Options, parseFlags, strategiesFor, type StrategyChoice } from "./cli/options.ts";
import { effectiveCaps, readObject, requireBtf, requirePrivileges } from "./cli/preflight.ts";
import { UsageError } from "./usage_error.ts";
import { loadConfig } from "./config/load.ts";
import { keepPredicate, mentionsField } from "./filter/select.ts";
import { kernelExcludedDports } from "./filter/compile.ts";
import { type ConnEvent, EVENT_KINDS, SCHEMA_VERSION } from "./event.ts";
import { runMonitor } from "./run/controller.ts";
import { SnapshotOverlap } from "./capture/snapshot.ts";
import { CLOCK_BOOTTIME, CLOCK_REALTIME, clockNs } from "../ffi/libc.ts";
import { BootClock } from "./enrich/clock.ts";
import { EnrichStage } from "./enrich/enricher.ts";
import { Holdback } from "./enrich/holdback.ts";
import { ConnJoin } from "./enrich/join.ts";
import { DnsStage } from "./dns/stage.ts";
import { ProcessCache, ProcessTracking } from "./enrich/process_cache.ts";
import { UserNames } from "./enrich/users.ts";
import { FilterStage } from "./filter/select.ts";
import { CountLimit } from "./output/limit.ts";
import { Containers } from "./enrich/containers.ts";
import { DockerSource } from "./enrich/docker.ts";
import { CONTAINERD_TASKS } from "./enrich/state_files.ts";
import { JsonRenderer, type Renderer, RenderStage, terminalWidth } from "./output/renderer.ts";
import { LineWriter } from "./output/writer.ts";
import { VERSION } from "./version.ts";
import { Baseline } from "./baseline/rules.ts";
import { loadBaseline } from "./baseline/file.ts";
import { BaselineStage, DriftStage, Learner } from "./baseline/stage.ts";

const log = (line: string) => console.error(line);

/** Flags over the config file over defaults; LIGHTMON_STRATEGY over both for the strategy. */
export async function resolveOptions(argv: readonly string[], env = Deno.env.toObject()): Promise<Options> {
  const flags = parseFlags(argv);
  const path = flags.config ?? DEFAULTS.config;
  const file = await loadConfig(path, flags.configGiven ?? false);
  const o: Options = { ...DEFAULTS, ...file, ...flags, configRead: file === undefined ? "" : path };
  if (env.LIGHTMON_STRATEGY && flags.strategy === undefined) {
    o.strategy = parseFlags([`--strategy=${env.LIGHTMON_STRATEGY}`]).strategy as StrategyChoice;
  }
  return o;
}

/** Version, libbpf, and which capture strategies this kernel allows (probed as root). */
function versionText(): string {
  const lines = [`lightmon ${VERSION} (event schema ${SCHEMA_VERSION})`];
  let lib: string | undefined;
  try {
    lib = libbpfVersion();
    lines.push(`libbpf ${lib}`);
  } catch (e) {
    lines.push(e instanceof Error ? e.message : String(e));
  }
  lines.push(`capture strategies, automatic order: ${strategiesFor("auto").join(" > ")}`);
  let caps = 0n;
  try {
    caps = effectiveCaps();
  } catch { /* no /proc */ }
  try {
    if (!lib) throw new UsageError("needs libbpf");
    requirePrivileges(caps);
    requireBtf();
    for (const [s, verdict] of probeStrategies(readObject(defaultObjectPath()))) lines.push(`  ${s}: ${verdict}`);
  } catch (e) {
    lines.push(`  (not probed: ${e instanceof Error ? e.message : e})`);
  }
  return lines.join("\n");
}

function defaultObjectPath(): string {
  return Deno.env.get("LIGHTMON_BPF_OBJECT") ??
    new URL("../build/lightmon.bpf.o", import.meta.url).pathname;
}

/**
 * The renderer for -output; table, summary and log code (cli-table3, node:fs) load
 * only when used: each costs start-up time.
 */
async function makeRenderer(o: Options): Promise<Renderer> {
  const out = new LineWriter(Deno.stdout, log);
  switch (o.output) {
    case "json":
      return new JsonRenderer(out);
    case "table": {
      const { TableOutput } = await import("./output/table.ts");
      return new TableOutput(out, terminalWidth(), o.baseline !== "");
    }
    case "log": {
      const { LogRenderer, prepareLogDir, RotatingLog } = await import("./output/logfile.ts");
      prepareLogDir(o.logPath);
      return new LogRenderer(new RotatingLog(o.logPath, o.logKeep, log));
    }
    case "summary": {
      const { SummaryRenderer } = await import("./output/summary.ts");
      return new SummaryRenderer(out, o.summaryFormat, log, undefined, o.baseline !== "");
    }
  }
}

async function main(argv: string[]): Promise<number> {
  const o = await resolveOptions(argv);
  if (o.help) {
    console.log(helpText());
    return 0;
  }
  if (o.version) {
    console.log(versionText());
    return 0;
  }
  const userKeep = keepPredicate(o);
  if (!o.baseline && (mentionsField(o.include, "novel") || mentionsField(o.exclude, "novel"))) {
    throw new UsageError("the novel filter field needs --baseline FILE (the flows that are not novel)");
  }
  // --events selects after the join: a close record needs its connection's opening record.
  // Untracked, the kernel sends connects only: nothing to select.
  const selected = new Set(o.events);
  if (!o.dns && selected.has("dns")) {
    // `all` means what there is to have; asking for dns by name without DNS capture is a mistake.
    if (o.events.length === EVENT_KINDS.length) selected.delete("dns");
    else throw new UsageError("--events dns needs DNS capture: drop -dns=false");
  }
  const trackConns = selected.has("accept") || selected.has("close");
  // Everything asked for, or connects only (then nothing else arrives): no selection per event.
  const keep = o.events.length === EVENT_KINDS.length || (o.events.length === 1 && o.events[0] === "connect")
    ? userKeep
    : (e: ConnEvent) => selected.has(e.event) && userKeep(e);
  requirePrivileges();
  requireBtf();
  const image = readObject(defaultObjectPath());
  // Both files are read before anything is loaded: a mistake in one is a usage error.
  const rules = o.baseline ? new Baseline() : undefined;
  const baselineFile = rules && await loadBaseline(o.baseline, rules, "--baseline", false);
  const learner = o.learn ? await Learner.open(o.learn) : undefined;
  if (learner) checkWritableDir(o.learn);
  setLogSink(o.verbose ? (l) => log(`libbpf: ${l}`) : undefined);
  // Listen before loading anything, so a busy port fails fast.
  const metrics = o.metricsAddr
    ? await (await import("./output/metrics.ts")).MetricsServer.open(o.metricsAddr)
    : undefined;
  const docker = new DockerSource(o.dockerRuntime, log);
  await docker.start();
  const containers = new Containers(docker, {
    dockerData: o.dockerData,
    containerdTasks: CONTAINERD_TASKS,
    k8s: o.k8s,
  });
  const sources = [
    docker.connected
      ? `docker (${docker.size} containers)`
      : docker.absent
      ? `docker (no socket at ${o.dockerRuntime})`
      : "docker (not answering)",
  ];
  if (existsDir(CONTAINERD_TASKS)) {
    sources.push(o.k8s ? "containerd CRI state" : "containerd CRI state when Docker is down");
  }
  const renderer = await makeRenderer(o);
  const processes = new ProcessTracking(new ProcessCache());
  const dns = o.dns ? new DnsStage(selected.has("dns")) : undefined;
  const holdback = new Holdback(o.metadataWaitMs, containers);
  docker.onUpdate = () => holdback.metadataArrived();
  const output = new RenderStage(renderer);
  const drift = rules || learner ? new DriftStage({ baselinePath: rules && o.baseline, learner }) : undefined;
  if (metrics) output.onClose = (e) => metrics.observeClose(e.durationMs, e.bytesSent, e.bytesReceived);
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
    }),
    holdback,
    ...(trackConns ? [new ConnJoin()] : []),
    ...(rules ? [new BaselineStage(rules)] : []),
    new FilterStage(keep),
    ...(o.count > 0 ? [new CountLimit(o.count)] : []),
    ...(drift ? [drift] : []),
    output,
  ];
  const drifting = [
    ...(baselineFile ? [`baseline ${o.baseline} (${baselineFile.flows} flows)`] : []),
    ...(learner ? [`learning into ${o.learn} (${learner.flows} flows)`] : []),
  ];
  try {
    const code = await runMonitor({
      image,
      strategies: strategiesFor(o.strategy),
      ipv4Only: !o.ipv6,
      existing: o.existing,
      trackConns,
      dns: o.dns,
      dnsQueries: selected.has("dns"),
      inboundExisting: selected.has("accept") || selected.has("close"),
      // LIGHTMON_KERNEL_FILTER=0 keeps every decision in user space (for comparison).
      excludedDports: Deno.env.get("LIGHTMON_KERNEL_FILTER") === "0" ? [] : kernelExcludedDports(o.exclude),
      durationMs: o.durationMs,
      statsIntervalMs: o.statsIntervalMs,
      verbose: o.verbose,
      stages,
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
              cutShort: s.stages.dns.cutShort,
              lost: Number(s.kernel.dnsLost),
              entries: s.stages.dns.cacheEntries,
              evictions: s.stages.dns.evictions,
            },
            novelByStatus: drift?.novelByStatus,
          };
        })),
      describe: `${o.configRead ? `config ${o.configRead}; ` : ""}containers: ${sources.join(", ")}; output ${
        o.output === "log" ? `log to ${o.logPath}` : o.output
      }${metrics ? `; metrics on http://${o.metricsAddr}/metrics` : ""}${drifting.map((d) => `; ${d}`).join("")}`,
      log,
    });
    if (code !== 0) return code;
    if (drift?.saveFailed) return 1;
    // A bounded run (cron) alerts on its exit code; a service stopped by a signal is not failing.
    if (rules && drift && drift.novelFlows > 0 && (o.durationMs > 0 || o.count > 0)) return 3;
    return 0;
  } finally {
    await docker.close();
    await metrics?.close();
  }
}

/** The directory a --learn file is replaced in must exist: said at start, not after an hour of learning. */
function checkWritableDir(path: string): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  if (!existsDir(dir)) throw new UsageError(`--learn ${path}: no directory ${dir}; create it first`);
}

function existsDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (e) {
    if (e instanceof UsageError || e instanceof LibbpfMissingError) {
      log(`lightmon: ${e.message}`);
      code = 2;
    } else if (e instanceof NoStrategyError || e instanceof BpfError) {
      log(`lightmon: ${e.message}`);
      code = 2;
    } else {
      log(`lightmon: internal error: ${e instanceof Error ? e.stack : e}`);
      code = 1;
    }
  }
  Deno.exit(code);
}
