/**
 * lightmon's entry point: options, preflight checks, then the monitor. Bad input
 * and missing kernel features end here as one line on stderr and exit code 2.
 * @module
 */
import { BpfError } from "../ffi/errno.ts";
import { LibbpfMissingError, libbpfVersion, setLogSink } from "../ffi/libbpf.ts";
import { loadCapture, NoStrategyError, probeStrategies } from "./capture/loader.ts";
import { DEFAULTS, helpText, type Options, parseFlags, strategiesFor, type StrategyChoice } from "./cli/options.ts";
import { effectiveCaps, readObject, requireBtf, requirePrivileges } from "./cli/preflight.ts";
import { UsageError } from "./usage_error.ts";
import { loadConfig } from "./config/load.ts";
import { kernelExcludedDports, kernelIncludedPorts } from "./filter/kernel_ports.ts";
import { EVENT_KINDS, SCHEMA_VERSION } from "./event.ts";
import { VERSION } from "./version.ts";
import type { Start } from "./run/monitor.ts";
import { StopSignals } from "./run/signals.ts";

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
async function versionText(): Promise<string> {
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
    for (const [s, verdict] of await probeStrategies(readObject(defaultObjectPath()))) lines.push(`  ${s}: ${verdict}`);
  } catch (e) {
    lines.push(`  (not probed: ${e instanceof Error ? e.message : e})`);
  }
  return lines.join("\n");
}

function defaultObjectPath(): string {
  return Deno.env.get("LIGHTMON_BPF_OBJECT") ??
    new URL("../build/lightmon.bpf.o", import.meta.url).pathname;
}

async function main(argv: string[], signals: StopSignals): Promise<number> {
  if (argv[0] === "baseline") {
    const { baselineCommand } = await import("./baseline/cli.ts");
    const enc = new TextEncoder();
    return await baselineCommand(argv.slice(1), {
      out: (text) => {
        const b = enc.encode(text);
        for (let off = 0; off < b.length;) off += Deno.stdout.writeSync(b.subarray(off));
      },
      log,
    });
  }
  const o = await resolveOptions(argv);
  if (o.help) {
    console.log(helpText());
    return 0;
  }
  if (o.version) {
    console.log(await versionText());
    return 0;
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
  // An opening record user space has no use for stays in the kernel, which keeps its task for the
  // close: accepts unless asked for; connects unless asked for or DNS names are on (a close takes
  // the name its connect had, which may have expired since).
  // With --flows, each record counts into its flow in the kernel: those asked for, no more.
  const flows = o.flowsMs > 0;
  const openings = {
    connects: !trackConns || selected.has("connect") || (o.dns && !flows),
    accepts: !trackConns || selected.has("accept"),
    namesOnly: trackConns && !selected.has("connect") && o.dns && !flows,
  };
  requirePrivileges();
  requireBtf();
  const image = readObject(defaultObjectPath());
  setLogSink(o.verbose ? (l) => log(`libbpf: ${l}`) : undefined);
  // LIGHTMON_KERNEL_FILTER=0 keeps every decision in user space (for comparison).
  const inKernel = Deno.env.get("LIGHTMON_KERNEL_FILTER") !== "0";
  const excludedDports = inKernel ? kernelExcludedDports(o.exclude) : [];
  const includedPorts = inKernel ? kernelIncludedPorts(o.include) : undefined;
  // LIGHTMON_TASK_BTF=0 reads tasks with probe reads, as a kernel before 5.11 does (for the tests).
  const taskBtf = Deno.env.get("LIGHTMON_TASK_BTF") === "0" ? false : undefined;
  // The load (~100 ms, most of it libbpf reading the kernel's BTF) runs on another thread
  // from here, while the rest of start-up goes on: the monitor's modules, the filters,
  // the baseline, Docker's list. Until runMonitor owns the capture, a failure closes it.
  const fallbacks: string[] = [];
  const capture = loadCapture({
    image,
    strategies: strategiesFor(o.strategy),
    ipv4Only: !o.ipv6,
    selfPid: Deno.pid,
    excludedDports,
    includedPorts,
    trackConns,
    openings,
    dns: o.dns,
    flows,
    taskBtf,
    onFallback: (s, e) => {
      fallbacks.push(`${s}: ${"code" in e ? e.code : e.message}`);
      if (o.verbose) log(`lightmon: strategy ${s} failed: ${e.message}`);
    },
  });
  capture.catch(() => {}); // a failure is awaited below, not unhandled meanwhile
  const start: Start = {
    capture,
    fallbacks,
    handedOver: false,
    selected,
    trackConns,
    openings,
    excludedDports,
    log,
    signals,
  };
  try {
    const { monitor } = await import("./run/monitor.ts");
    return await monitor(o, start);
  } finally {
    if (!start.handedOver) await capture.then(({ object }) => object.close(), () => {});
  }
}

if (import.meta.main) {
  const signals = new StopSignals();
  let code: number;
  try {
    code = await main(Deno.args, signals);
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
