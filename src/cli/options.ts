/**
 * lightmon's options: one table drives flag parsing, the config file's keys and
 * `--help`. Flags are accepted in Go `flag` style (`-output json`, `-v6=false`)
 * as well as GNU style (`--output json`, `--output=json`). Precedence: flags >
 * config file > defaults.
 * @module
 */
import { parseArgs } from "node:util";
import type { Strategy } from "../capture/loader.ts";
import { FILTER_FIELDS } from "../fields.ts";
import { EVENT_KINDS, type EventKind } from "../event.ts";
import { parseDuration } from "./duration.ts";
import { UsageError } from "../usage_error.ts";

/** Output formats. `logfile` is the original's name for `log`. */
export const OUTPUTS = ["table", "json", "log", "summary"] as const;
/** An output format. */
export type Output = (typeof OUTPUTS)[number];

/** Strategy choices on the command line. */
export const STRATEGY_CHOICES = ["auto", "tracepoints", "fentry", "kprobe", "tp_btf", "tracepoint"] as const;
/** A strategy choice: one strategy, `auto`, or `tracepoints` (tp_btf then tracepoint). */
export type StrategyChoice = (typeof STRATEGY_CHOICES)[number];

/** Everything that shapes a run. */
export interface Options {
  output: Output;
  summaryFormat: "table" | "json";
  config: string;
  configGiven: boolean;
  /** The config file that was read, or "" (set by main's resolveOptions). */
  configRead: string;
  exclude: string;
  include: string;
  ipv6: boolean;
  existing: boolean;
  /** Which records to report: connect (default), accept, close. */
  events: readonly EventKind[];
  /** Capture DNS responses and name every event's remote end. */
  dns: boolean;
  /** Baseline file to flag events against (`novel`), or "". */
  baseline: string;
  /** Baseline file to record flows into, or "". */
  learn: string;
  k8s: boolean;
  logPath: string;
  logKeep: number;
  dockerRuntime: string;
  dockerData: string;
  strategy: StrategyChoice;
  durationMs: number;
  count: number;
  statsIntervalMs: number;
  metadataWaitMs: number;
  metricsAddr: string;
  verbose: boolean;
  help: boolean;
  version: boolean;
}

/** Defaults; the README lists where they differ from the original tool. */
export const DEFAULTS: Options = {
  output: "table",
  summaryFormat: "table",
  config: "config.yaml",
  configGiven: false,
  configRead: "",
  exclude: "",
  include: "",
  ipv6: true,
  existing: true,
  events: ["connect"],
  dns: true,
  baseline: "",
  learn: "",
  k8s: false,
  logPath: "/var/log/lightmon",
  logKeep: 8,
  dockerRuntime: "/var/run/docker.sock",
  dockerData: "/var/lib/docker",
  strategy: "auto",
  durationMs: 0,
  count: 0,
  statsIntervalMs: 0,
  metadataWaitMs: 200,
  metricsAddr: "",
  verbose: false,
  help: false,
  version: false,
};

type Kind = "string" | "boolean";

interface Flag {
  /** Long name as typed after - or --. */
  name: string;
  aliases?: string[];
  short?: string;
  kind: Kind;
  /** The Options key it sets, and how to convert the text. */
  key: keyof Options;
  convert?: (v: string, flag: string) => Options[keyof Options];
  /** Config file key (the original's spelling), if the file may set it. */
  configKey?: string;
  group: "Output" | "Filtering" | "Baseline" | "Capture" | "Containers" | "Run" | "Help";
  value?: string;
  help: string;
}

function oneOf<T extends string>(choices: readonly T[], aliases: Record<string, T> = {}) {
  return (v: string, flag: string): T => {
    const c = (aliases[v] ?? v) as T;
    if (!choices.includes(c)) {
      throw new UsageError(`${flag}: unknown value '${v}'; choose one of ${choices.join(", ")}`);
    }
    return c;
  };
}

/** `connect,accept,close` or `all` to the kinds, in their order, once each. */
function eventList(v: string, flag: string): EventKind[] {
  const names = v.split(",").map((x) => x.trim().toLowerCase()).filter((x) => x !== "");
  const known = new Set<string>([...EVENT_KINDS, "all"]);
  const bad = names.find((x) => !known.has(x));
  if (bad !== undefined || names.length === 0) {
    throw new UsageError(
      `${flag}: ${bad === undefined ? "empty list" : `unknown event '${bad}'`}; choose from ${
        EVENT_KINDS.join(", ")
      }, or all`,
    );
  }
  return EVENT_KINDS.filter((k) => names.includes(k) || names.includes("all"));
}

/** The longest duration any flag takes: a year (longer ones are typos, and past 2^53 ns precision ends). */
const MAX_DURATION_MS = 366 * 24 * 3_600_000;

/** A duration converter; `max` (ms) where a longer value has no meaning. */
function durationUpTo(max: number, why: string) {
  return (v: string, flag: string): number => {
    const ms = parseDuration(v);
    if (ms === undefined || ms < 0 || !Number.isFinite(ms)) {
      throw new UsageError(`${flag}: cannot parse duration '${v}'; use e.g. 30s, 5m, 1h30m`);
    }
    if (ms > max) throw new UsageError(`${flag}: '${v}' is longer than ${why}`);
    return ms;
  };
}

const duration = durationUpTo(MAX_DURATION_MS, "a year");

function count(v: string, flag: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag}: '${v}' is not a whole number`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag}: '${v}' is too large`);
  return n;
}

const ebpfType = (v: string, flag: string): StrategyChoice => {
  if (v === "0") return "auto";
  if (v === "1") return "tracepoints";
  throw new UsageError(`${flag}: unknown value '${v}'; use 0 (fentry first, automatic fallback) or 1 (tracepoints)`);
};

/** The flag table. */
export const FLAGS: readonly Flag[] = [
  {
    name: "output",
    aliases: ["format"],
    short: "f",
    kind: "string",
    key: "output",
    configKey: "format",
    convert: oneOf(OUTPUTS, { logfile: "log" }),
    group: "Output",
    value: "FORMAT",
    help: "table, json, log (alias logfile: rotating files in -log_path) or summary",
  },
  {
    name: "summary-format",
    kind: "string",
    key: "summaryFormat",
    convert: oneOf(["table", "json"] as const),
    group: "Output",
    value: "FORMAT",
    help: "how -output summary prints its flows: table or json",
  },
  {
    name: "log_path",
    aliases: ["log-path"],
    kind: "string",
    key: "logPath",
    configKey: "logPath",
    group: "Output",
    value: "DIR",
    help: "directory for -output log files",
  },
  {
    name: "log-keep",
    kind: "string",
    key: "logKeep",
    configKey: "logKeep",
    convert: count,
    group: "Output",
    value: "N",
    help: "hourly log files to keep",
  },
  {
    name: "exclude",
    kind: "string",
    key: "exclude",
    configKey: "exclude",
    group: "Filtering",
    value: "EXPR",
    help: "drop connections matching EXPR, e.g. 'dport=53; dip=\"10.0.0.0/8\" && keyword=nginx'",
  },
  {
    name: "include",
    kind: "string",
    key: "include",
    configKey: "include",
    group: "Filtering",
    value: "EXPR",
    help: "keep only connections matching EXPR (applied before -exclude)",
  },
  {
    name: "v6",
    kind: "boolean",
    key: "ipv6",
    configKey: "ipv6",
    group: "Filtering",
    help: "show IPv6 connections (-v6=false hides them)",
  },
  {
    name: "existing",
    kind: "boolean",
    key: "existing",
    configKey: "existing",
    group: "Filtering",
    help: "report connections already established at start as status existing (-existing=false: only new ones)",
  },
  {
    name: "events",
    kind: "string",
    key: "events",
    configKey: "events",
    convert: eventList,
    group: "Filtering",
    value: "LIST",
    help:
      "records to report, comma-separated: connect (outbound), accept (inbound), close (duration, bytes), dns (responses), or all",
  },
  {
    name: "baseline",
    kind: "string",
    key: "baseline",
    configKey: "baseline",
    group: "Baseline",
    value: "FILE",
    help:
      "mark each connection novel=true|false against the flows FILE lists; with -duration or -count, exit 3 if any was novel",
  },
  {
    name: "learn",
    kind: "string",
    key: "learn",
    configKey: "learn",
    group: "Baseline",
    value: "FILE",
    help: "record every flow seen into FILE (YAML, created or merged into; saved every minute and at the end)",
  },
  {
    name: "dns",
    kind: "boolean",
    key: "dns",
    configKey: "dns",
    group: "Capture",
    help: "learn DNS names from the responses each workload receives, for dnsName (-dns=false: addresses only)",
  },
  {
    name: "strategy",
    kind: "string",
    key: "strategy",
    configKey: "strategy",
    convert: oneOf(STRATEGY_CHOICES),
    group: "Capture",
    value: "NAME",
    help: "auto, tracepoints, fentry, kprobe, tp_btf or tracepoint (env LIGHTMON_STRATEGY)",
  },
  {
    name: "ebpf_type",
    aliases: ["ebpf-type"],
    kind: "string",
    key: "strategy",
    configKey: "ebpfType",
    convert: ebpfType,
    group: "Capture",
    value: "0|1",
    help: "original tool's choice: 0 = auto (fentry first), 1 = tracepoints only",
  },
  {
    name: "k8s",
    kind: "boolean",
    key: "k8s",
    configKey: "k8s",
    group: "Containers",
    help: "read pod metadata from containerd's state files as well as Docker",
  },
  {
    name: "docker_runtime",
    aliases: ["docker-runtime"],
    kind: "string",
    key: "dockerRuntime",
    configKey: "docker_runtime",
    group: "Containers",
    value: "PATH",
    help: "Docker Engine API socket",
  },
  {
    name: "docker_data",
    aliases: ["docker-data"],
    kind: "string",
    key: "dockerData",
    configKey: "docker_data",
    group: "Containers",
    value: "DIR",
    help: "Docker data root (container state files)",
  },
  {
    name: "metadata-wait",
    kind: "string",
    key: "metadataWaitMs",
    configKey: "metadataWait",
    // Every event behind a held one waits with it: past a minute the output is no longer live.
    convert: durationUpTo(60_000, "1m (events behind a held one wait with it)"),
    group: "Containers",
    value: "DURATION",
    help: "longest an event waits for a new container's name",
  },
  {
    name: "duration",
    kind: "string",
    key: "durationMs",
    convert: duration,
    group: "Run",
    value: "DURATION",
    help: "stop after this long (Go syntax: 30s, 5m, 1h30m); 0 runs until stopped",
  },
  {
    name: "count",
    kind: "string",
    key: "count",
    convert: count,
    group: "Run",
    value: "N",
    help: "stop after N events; 0 means no limit",
  },
  {
    name: "stats",
    kind: "string",
    key: "statsIntervalMs",
    convert: duration,
    group: "Run",
    value: "INTERVAL",
    help: "print the counters on stderr every INTERVAL",
  },
  {
    name: "metrics-addr",
    kind: "string",
    key: "metricsAddr",
    configKey: "metricsAddr",
    group: "Run",
    value: "HOST:PORT",
    help: "serve Prometheus metrics on http://HOST:PORT/metrics, e.g. 127.0.0.1:9090",
  },
  {
    name: "config",
    short: "c",
    kind: "string",
    key: "config",
    group: "Run",
    value: "FILE",
    help: "YAML config file (read only if present unless given)",
  },
  { name: "verbose", kind: "boolean", key: "verbose", group: "Run", help: "show libbpf's log and each fallback" },
  { name: "help", short: "h", kind: "boolean", key: "help", group: "Help", help: "show this help" },
  {
    name: "version",
    kind: "boolean",
    key: "version",
    group: "Help",
    help: "print the version and the capture strategies",
  },
];

const BY_NAME = new Map<string, Flag>();
for (const f of FLAGS) {
  BY_NAME.set(f.name, f);
  for (const a of f.aliases ?? []) BY_NAME.set(a, f);
}

/**
 * Rewrite Go-style flags into the GNU form parseArgs reads: `-name` -> `--name`,
 * `--bool=false` -> `--no-bool`.
 */
function normalize(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^--?([A-Za-z0-9][\w-]*)(?:=(.*))?$/s.exec(a);
    if (!m || (a[1] !== "-" && m[1].length === 1)) {
      out.push(a);
      continue;
    }
    const negated = m[1].startsWith("no-") ? BY_NAME.get(m[1].slice(3)) : undefined;
    if (negated?.kind === "boolean" && m[2] === undefined) {
      out.push(`--no-${negated.name}`);
      continue;
    }
    const flag = BY_NAME.get(m[1]);
    if (flag?.kind === "boolean" && m[2] !== undefined) {
      const v = m[2].toLowerCase();
      if (["1", "t", "true"].includes(v)) out.push(`--${flag.name}`);
      else if (["0", "f", "false"].includes(v)) out.push(`--no-${flag.name}`);
      else throw new UsageError(`-${m[1]}: '${m[2]}' is not a boolean; use true or false`);
    } else if (flag?.kind === "string" && m[2] === undefined && i + 1 < argv.length) {
      // As Go's flag package does: a string flag takes the next argument, even "-3".
      out.push(`--${flag.name}=${argv[++i]}`);
    } else if (flag) {
      out.push(m[2] === undefined ? `--${flag.name}` : `--${flag.name}=${m[2]}`);
    } else if (m[1].length > 1 || a.startsWith("--")) {
      throw new UsageError(`unknown flag '${a.split("=")[0]}'; see --help`);
    } else {
      out.push(a);
    }
  }
  return out;
}

/** The options a command line sets (only those given) and the config path. */
export function parseFlags(argv: readonly string[]): Partial<Options> {
  const options: Record<string, { type: Kind; short?: string }> = {};
  for (const f of FLAGS) options[f.name] = { type: f.kind, ...(f.short ? { short: f.short } : {}) };
  const args = normalize(argv);
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true, allowNegative: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const unknown = /Unknown option '([^']+)'/.exec(msg);
    if (unknown) throw new UsageError(`unknown flag '${unknown[1]}'; see --help`);
    const missing = /--([\w-]+) <value>' argument missing/.exec(msg);
    if (missing) throw new UsageError(`-${missing[1]} needs a value; see --help`);
    throw new UsageError(`${msg.split("\n")[0].replace(/\.$/, "")}; see --help`);
  }
  if (parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument '${parsed.positionals[0]}'; see --help`);
  }
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(parsed.values)) {
    const f = BY_NAME.get(name)!;
    if (value === undefined) continue;
    out[f.key] = f.convert && typeof value === "string" ? f.convert(value, `-${f.name}`) : value;
  }
  if (out.config !== undefined) out.configGiven = true;
  return out as Partial<Options>;
}

/** Config file keys, the original's spelling, with the flag each stands for. */
export const CONFIG_KEYS: ReadonlyMap<string, Flag> = new Map(
  FLAGS.filter((f) => f.configKey).map((f) => [f.configKey!, f]),
);

/** The strategies to try, in order, for a choice. */
export function strategiesFor(choice: StrategyChoice): Strategy[] {
  switch (choice) {
    case "auto":
      return ["fentry", "kprobe", "tp_btf", "tracepoint"];
    case "tracepoints":
      return ["tp_btf", "tracepoint"];
    default:
      return [choice];
  }
}

/** The full --help text. */
export function helpText(): string {
  const lines = [
    "lightmon - container-aware TCP connection monitor (eBPF)",
    "",
    "Usage: sudo lightmon [flags]",
    "",
    "Flags take one or two dashes and a value after a space or '=' (Go and GNU style).",
  ];
  const groups = [...new Set(FLAGS.map((f) => f.group))];
  for (const g of groups) {
    lines.push("", `${g}:`);
    for (const f of FLAGS.filter((x) => x.group === g)) {
      const names = [f.short ? `-${f.short}` : "", `-${f.name}`, ...(f.aliases ?? []).map((a) => `-${a}`)]
        .filter(Boolean).join(", ");
      const left = `  ${names}${f.value ? ` ${f.value}` : ""}`;
      const def = DEFAULTS[f.key];
      const showDef = f.key !== "help" && f.key !== "version" && f.key !== "configGiven" && f.key !== "configRead" &&
        def !== "" && def !== 0 && def !== false && f.name !== "ebpf_type";
      const defText = showDef ? ` (default ${formatDefault(f.key, def)})` : "";
      lines.push(
        left.length < 34 ? `${left.padEnd(34)}${f.help}${defText}` : `${left}\n${" ".repeat(34)}${f.help}${defText}`,
      );
    }
  }
  lines.push(
    "",
    "Examples:",
    "  sudo lightmon                                    live table of every outbound TCP connection",
    "  sudo lightmon -output json -exclude 'dport=53'   JSON lines without DNS over TCP",
    "  sudo lightmon --include 'container=web' --count 10",
    "  sudo lightmon --duration 60s --output summary    audit snapshot for cron",
    "",
    ...filterFieldsHelp(),
    "Exit codes: 0 done, 1 runtime failure, 2 bad input or missing kernel feature.",
  );
  return lines.join("\n");
}

/** The filter fields, the original's first, wrapped to 100 columns. */
function filterFieldsHelp(): string[] {
  const fields = [...FILTER_FIELDS.values()];
  const names = (original: boolean) => fields.filter((f) => f.original === original).map((f) => f.name).join(", ");
  const text = `Filter fields: ${names(true)} (the original's) and ${names(false)}.`;
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > 100) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

function formatDefault(key: keyof Options, v: unknown): string {
  if (key === "metadataWaitMs") return `${v}ms`;
  return String(v);
}
