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
import { VERSION } from "../version.ts";

/** Output formats. `logfile` is the original's name for `log`. */
export const OUTPUTS = ["table", "json", "log", "summary", "otlp"] as const;
/** An output format. */
export type Output = (typeof OUTPUTS)[number];

/** Strategy choices on the command line. */
export const STRATEGY_CHOICES = ["auto", "tracepoints", "fentry", "kprobe", "tp_btf", "tracepoint"] as const;
/** A strategy choice: one strategy, `auto`, or `tracepoints` (tp_btf then tracepoint). */
export type StrategyChoice = (typeof STRATEGY_CHOICES)[number];

/** Everything that shapes a run. */
export interface Options {
  output: Output;
  summaryFormat: "table" | "json" | "dot" | "mermaid";
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
  /** --flows: one record per flow every this many ms, counted in the kernel; 0 reports each connection. */
  flowsMs: number;
  count: number;
  statsIntervalMs: number;
  metadataWaitMs: number;
  metricsAddr: string;
  /** --output otlp's collector, over OTEL_EXPORTER_OTLP_ENDPOINT; "" for the environment's. */
  otlpEndpoint: string;
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
  flowsMs: 0,
  count: 0,
  statsIntervalMs: 0,
  metadataWaitMs: 200,
  metricsAddr: "",
  otlpEndpoint: "",
  verbose: false,
  help: false,
  version: false,
};

type Kind = "string" | "boolean";

export interface Flag {
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
  group: (typeof GROUPS)[number];
  /** The value's name in `--help` (`FILE`), for flags that take one. */
  value?: string;
  /** The values it takes, when they are a fixed list (for the completion). */
  choices?: readonly string[];
  /** It names a file or a directory (for the completion). */
  file?: "file" | "dir";
  /** One line for `--help`. */
  help: string;
  /** The man page's paragraph, when it says more than `help` (markdown backticks for code). */
  doc?: string;
}

/** The groups of `--help` and the man page, in their order. */
export const GROUPS = ["Capture", "Output", "Filters", "Containers", "Baseline", "Operations"] as const;

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

/** The shortest and longest --flows interval: reading the kernel's table takes a pause of its own; past a day, nothing is live. */
export const MIN_FLOWS_MS = 100;
export const MAX_FLOWS_MS = 24 * 3_600_000;

function flowsInterval(v: string, flag: string): number {
  const ms = durationUpTo(MAX_FLOWS_MS, "a day (flows are counted in memory until then)")(v, flag);
  if (ms < MIN_FLOWS_MS) {
    throw new UsageError(`${flag}: '${v}' is shorter than ${MIN_FLOWS_MS}ms; give an interval such as 10s`);
  }
  return ms;
}

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

/** The flag table: `--help`, the man page and the bash completion are generated from it. */
export const FLAGS: readonly Flag[] = [
  {
    name: "events",
    kind: "string",
    key: "events",
    configKey: "events",
    convert: eventList,
    group: "Capture",
    value: "LIST",
    choices: [...EVENT_KINDS, "all"],
    help: "connect, accept, close, dns or all, comma-separated",
    doc:
      "Which records to report, comma-separated: `connect` (outbound attempts, with their outcome), `accept` (inbound connections, in the accepting process), `close` (one per connection: duration, bytes each way, who ended it), `dns` (one per DNS response), or `all`.",
  },
  {
    name: "existing",
    kind: "boolean",
    key: "existing",
    configKey: "existing",
    group: "Capture",
    help: "report connections open at start, as status existing",
    doc:
      "Report connections already established when lightmon starts, once each, with status `existing` (found by a BPF iterator over every process's sockets). `-existing=false` reports only new ones.",
  },
  {
    name: "dns",
    kind: "boolean",
    key: "dns",
    configKey: "dns",
    group: "Capture",
    help: "name remote ends from the DNS answers each workload got",
    doc:
      "Learn DNS names from the responses each workload (network namespace) receives to queries it sent, and put them on every event as `dnsName`. `-dns=false` reports addresses only.",
  },
  {
    name: "strategy",
    kind: "string",
    key: "strategy",
    configKey: "strategy",
    convert: oneOf(STRATEGY_CHOICES),
    group: "Capture",
    value: "NAME",
    choices: STRATEGY_CHOICES,
    help: "auto, tracepoints, fentry, kprobe, tp_btf, tracepoint",
    doc:
      "The kernel hooks to capture with. `auto` tries fentry, kprobe, tp_btf, then tracepoint, and says why each one before the chosen failed; `tracepoints` tries tp_btf then tracepoint. The environment variable `LIGHTMON_STRATEGY` sets it when the flag is not given.",
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
    choices: ["0", "1"],
    help: "the original's choice: 0 = auto (fentry first), 1 = tracepoints only",
  },
  {
    name: "flows",
    kind: "string",
    key: "flowsMs",
    configKey: "flows",
    convert: flowsInterval,
    group: "Output",
    value: "INTERVAL",
    help: "one record per flow every INTERVAL (10s), counted in the kernel",
    doc:
      "Instead of a record per connection, one `flow` record every INTERVAL for each flow active in it: workload, process, direction, remote address and name, port, with its connections, their outcomes, and its closes' bytes. Counted in the kernel, at a cost that does not grow with the connection rate. At least 100ms, at most a day.",
  },
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
    choices: [...OUTPUTS, "logfile"],
    help: "table, json, log (hourly files), summary or otlp",
    doc:
      "`table`: bordered rows fitted to the terminal. `json`: one JSON object per line on standard output. `log` (alias `logfile`): the original tool's log lines in hourly files under `-log_path`. `summary`: unique flows with counts, printed at the end of the run. `otlp`: OTLP log records sent over OTLP/HTTP to an OpenTelemetry Collector (see `-otlp-endpoint` and the `OTEL_EXPORTER_OTLP_*` variables).",
  },
  {
    name: "otlp-endpoint",
    kind: "string",
    key: "otlpEndpoint",
    configKey: "otlpEndpoint",
    group: "Output",
    value: "URL",
    help: "the collector -output otlp sends to (http://collector:4318)",
    doc:
      "The OpenTelemetry Collector's OTLP/HTTP endpoint; `/v1/logs` is added unless the URL ends with it. Over `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` and `OTEL_EXPORTER_OTLP_ENDPOINT`; the default is `http://localhost:4318`. Protocol, headers, compression, timeout, certificates and resource attributes come from the standard `OTEL_*` variables.",
  },
  {
    name: "summary-format",
    kind: "string",
    key: "summaryFormat",
    convert: oneOf(["table", "json", "dot", "mermaid"] as const),
    group: "Output",
    value: "FORMAT",
    choices: ["table", "json", "dot", "mermaid"],
    help: "how -output summary prints: table, json, dot or mermaid",
    doc:
      "`table` and `json`: the unique flows with their counts. `dot` (Graphviz) and `mermaid` (a flowchart GitHub and GitLab render): a map of who talks to whom, one node per container, pod, host program and remote end, one edge per flow with its port, connections and bytes (`lightmon --duration 60s --output summary --summary-format dot | dot -Tsvg > map.svg`).",
  },
  {
    name: "log_path",
    aliases: ["log-path"],
    kind: "string",
    key: "logPath",
    configKey: "logPath",
    group: "Output",
    value: "DIR",
    file: "dir",
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
    name: "include",
    kind: "string",
    key: "include",
    configKey: "include",
    group: "Filters",
    value: "EXPR",
    help: "keep only events matching EXPR (applied before -exclude)",
  },
  {
    name: "exclude",
    kind: "string",
    key: "exclude",
    configKey: "exclude",
    group: "Filters",
    value: "EXPR",
    help: "drop events matching EXPR, e.g. 'dport=53; dip=\"10.0.0.0/8\"'",
  },
  {
    name: "v6",
    kind: "boolean",
    key: "ipv6",
    configKey: "ipv6",
    group: "Filters",
    help: "show IPv6 connections (-v6=false hides them)",
  },
  {
    name: "k8s",
    kind: "boolean",
    key: "k8s",
    configKey: "k8s",
    group: "Containers",
    help: "read pod metadata from containerd's state files too",
  },
  {
    name: "docker_runtime",
    aliases: ["docker-runtime"],
    kind: "string",
    key: "dockerRuntime",
    configKey: "docker_runtime",
    group: "Containers",
    value: "PATH",
    file: "file",
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
    file: "dir",
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
    name: "baseline",
    kind: "string",
    key: "baseline",
    configKey: "baseline",
    group: "Baseline",
    value: "FILE",
    file: "file",
    help: "mark events novel=true unless FILE lists their flow; exit 3 if any",
    doc:
      "Mark every connection event `novel: true|false` against the flows the baseline FILE lists. A run bounded by `-duration` or `-count` exits 3 when it reported a novel flow.",
  },
  {
    name: "learn",
    kind: "string",
    key: "learn",
    configKey: "learn",
    group: "Baseline",
    value: "FILE",
    file: "file",
    help: "record every flow seen into FILE (created or merged into)",
    doc:
      "Record every flow reported into the baseline FILE (YAML), creating it or merging into it; saved every minute, on SIGHUP and at the end.",
  },
  {
    name: "duration",
    kind: "string",
    key: "durationMs",
    convert: duration,
    group: "Operations",
    value: "DURATION",
    help: "stop after this long (30s, 5m, 1h30m); 0 runs until stopped",
  },
  {
    name: "count",
    kind: "string",
    key: "count",
    convert: count,
    group: "Operations",
    value: "N",
    help: "stop after N events; 0 means no limit",
  },
  {
    name: "stats",
    kind: "string",
    key: "statsIntervalMs",
    convert: duration,
    group: "Operations",
    value: "INTERVAL",
    help: "print the counters on stderr every INTERVAL",
  },
  {
    name: "metrics-addr",
    kind: "string",
    key: "metricsAddr",
    configKey: "metricsAddr",
    group: "Operations",
    value: "HOST:PORT",
    help: "serve Prometheus metrics on http://HOST:PORT/metrics",
  },
  {
    name: "config",
    short: "c",
    kind: "string",
    key: "config",
    group: "Operations",
    value: "FILE",
    file: "file",
    help: "YAML config file (read if present, unless given)",
  },
  {
    name: "verbose",
    kind: "boolean",
    key: "verbose",
    group: "Operations",
    help: "show libbpf's log and each fallback",
  },
  { name: "help", short: "h", kind: "boolean", key: "help", group: "Operations", help: "show this help" },
  {
    name: "version",
    kind: "boolean",
    key: "version",
    group: "Operations",
    help: "print the version and the strategies this kernel allows",
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

/** The examples that end `--help` and the man page: command, what it does. */
export const EXAMPLES: readonly (readonly [string, string])[] = [
  ["sudo lightmon", "watch every outbound TCP connection, live"],
  ["sudo lightmon -events all -include 'lport=5432'", "who connects to port 5432 here, and how much"],
  ["sudo lightmon -duration 60s -output summary -baseline b.yaml", "an audit: exit 3 on flows b.yaml lacks"],
];

/** Exit codes, for `--help` and the man page. */
export const EXIT_CODES: readonly (readonly [number, string])[] = [
  [0, "the run ended: a signal, -duration or -count"],
  [1, "a runtime failure: the ring buffer reader failed, a learned baseline could not be saved"],
  [2, "bad input (flags, config, filters, baseline) or a missing privilege, library or kernel feature"],
  [3, "with -baseline, a run bounded by -duration or -count reported a novel flow"],
];

/** A flag's names as `--help` shows them: the short one, then the long one. */
export function flagNames(f: Flag, withAliases = false): string[] {
  return [
    ...(f.short ? [`-${f.short}`] : []),
    `-${f.name}`,
    ...(withAliases ? f.aliases ?? [] : []).map((a) => `-${a}`),
  ];
}

/** The default a flag shows, or "" when it has none worth saying. */
export function defaultText(f: Flag): string {
  const v = DEFAULTS[f.key];
  if (f.key === "help" || f.key === "version" || f.name === "ebpf_type" || v === "" || v === 0 || v === false) {
    return "";
  }
  if (f.key === "metadataWaitMs") return `${v}ms`;
  return Array.isArray(v) ? v.join(",") : String(v);
}

/** The full --help text: grouped, a flag a line, at most 100 columns and 100 lines. */
export function helpText(): string {
  const lines = [
    `lightmon ${VERSION} - container-aware TCP connection monitor (eBPF)`,
    "",
    "Usage: sudo lightmon [flags]    (-flag or --flag; a value after a space or '=')",
    "       lightmon baseline merge FILE... [-o OUT]  |  lightmon baseline check FILE...",
  ];
  for (const g of GROUPS) {
    lines.push("", `${g}:`);
    for (const f of FLAGS.filter((x) => x.group === g)) {
      const left = `  ${flagNames(f).join(", ")}${f.value ? ` ${f.value}` : ""}`;
      const def = defaultText(f);
      lines.push(`${left.padEnd(27)}${f.help}${def ? ` (default ${def})` : ""}`);
    }
  }
  lines.push("", "Examples:");
  for (const [cmd, what] of EXAMPLES) lines.push(`  ${cmd}`, `      ${what}`);
  lines.push(
    "",
    ...filterFieldsHelp(),
    "",
    "Exit codes:",
    ...EXIT_CODES.map(([c, what]) => `  ${c}  ${what}`),
    "",
    "More: man lightmon (docs/lightmon.1), and docs/ for the reference.",
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
