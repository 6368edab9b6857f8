/**
 * Loads the BPF object with the best capture strategy the kernel allows.
 *
 * A strategy is a set of program variants from the one object. The loader tries
 * them in order (fentry, kprobe, tp_btf, tracepoint): each attempt opens the
 * object afresh, turns autoload off for the other variants, loads and attaches;
 * any failure closes everything it opened and moves on.
 * @module
 */
import { BpfError } from "../../ffi/errno.ts";
import { BpfObject, cgroupSkbHasNetnsCookie, cgroupSkbKnowsTask, fentryRefused } from "../../ffi/libbpf.ts";
import { ensureTracefs, tracefsMounted } from "../../ffi/tracefs.ts";
import { libc, openDirectory, releaseFreeMemory } from "../../ffi/libc.ts";
import { cgroup2Root } from "./cgroup_root.ts";
import {
  CONFIG,
  CONFIG_SIZE,
  COUNTERS,
  INCL_LOCAL,
  INCL_REMOTE,
  OPEN_ACCEPTS,
  OPEN_CONNECTS,
  OPEN_NAMES_ONLY,
  PORT_LOCAL,
  PORT_REMOTE,
} from "./layout.ts";

/** A capture strategy. */
export type Strategy = "fentry" | "kprobe" | "tp_btf" | "tracepoint";

/** Strategies, best first: the automatic order. */
export const STRATEGIES: readonly Strategy[] = ["fentry", "kprobe", "tp_btf", "tracepoint"];

const BTF_OUTCOME = ["lm_btf_state", "lm_btf_retrans", "lm_btf_exec", "lm_btf_exit", "lm_btf_fork"];

/** The programs each strategy loads and attaches, in attach order. */
export const PROGRAMS: Record<Strategy, readonly string[]> = {
  fentry: ["lm_fentry_conn", ...BTF_OUTCOME],
  kprobe: ["lm_kprobe_conn", ...BTF_OUTCOME],
  tp_btf: BTF_OUTCOME,
  tracepoint: ["lm_tp_state", "lm_tp_retrans", "lm_tp_exec", "lm_tp_exit"],
};

/**
 * The ring buffer's size when accepts and closes are tracked (the object's 4 MiB
 * otherwise): ~45,000 records of 184 bytes, four a connection.
 */
export const TRACKING_RING_BYTES = 8 * 1024 * 1024;
/**
 * The ring buffer's size without accepts (--events close): two closes a connection,
 * and a connect when DNS names are on (taken from the ring undecoded: it drains fast).
 */
export const CLOSES_RING_BYTES = 4 * 1024 * 1024;

/** The object's own ring size (bpf/lightmon.bpf.c), when connections are not tracked. */
export const DEFAULT_RING_BYTES = 4 * 1024 * 1024;

/**
 * How full the ring may be before new connections' records go to their flows
 * instead: the last quarter stays for the closes of connections already reported
 * one by one, and for the process records that name them.
 */
export const OVERFLOW_FILL = 0.75;

/** The ring's size for what is asked. */
export function ringBytes(o: { trackConns?: boolean; openings?: { connects: boolean; accepts: boolean } }): number {
  if (!o.trackConns) return DEFAULT_RING_BYTES;
  return !o.openings || o.openings.accepts ? TRACKING_RING_BYTES : CLOSES_RING_BYTES;
}

/** The start-up snapshot's iterator, loaded on its own (see snapshot.ts). */
export const SNAPSHOT_PROGRAM = "lm_iter_tcp";

/**
 * Accepts, for every strategy: syscall tracepoints (through tracefs). Loaded only
 * when connections are tracked (`--events` accept or close).
 */
export const ACCEPT_PROGRAMS = ["lm_tp_accept4", "lm_tp_accept"];

/**
 * DNS: cgroup_skb programs on the cgroup v2 root (`--dns`, the default), responses
 * on ingress and the queries they must answer on egress (a response that answers
 * no query seen leaving is never learned from, so the two load together or not at
 * all), naming each packet's network namespace, or, on kernels that cannot,
 * matching per host.
 */
export const DNS_PROGRAMS = {
  netns: ["lm_dns_in", "lm_dns_out"],
  host: ["lm_dns_in_host", "lm_dns_out_host"],
  /** Without the sender of a query (its pid, uid and container are then unknown): Debian 12's 6.1. */
  bare: ["lm_dns_in_host", "lm_dns_out_bare"],
} as const;

const ALL_PROGRAMS = [
  ...new Set([
    ...Object.values(PROGRAMS).flat(),
    SNAPSHOT_PROGRAM,
    ...ACCEPT_PROGRAMS,
    ...Object.values(DNS_PROGRAMS).flat(),
  ]),
];

/** What the loader is asked for. */
export interface LoadOptions {
  /** The object file's bytes. */
  image: Uint8Array<ArrayBuffer>;
  /** Strategies to try, in order. */
  strategies: readonly Strategy[];
  /** Drop IPv6 connections (v4-mapped ones are IPv4 and kept). */
  ipv4Only: boolean;
  /** Our own pid, never reported. */
  selfPid: number;
  /** Destination ports to drop in the kernel, at connect(). */
  excludedDports?: readonly number[];
  /**
   * The only ports -include can keep (kernelIncludedPorts): a connection with none
   * of them is neither tracked nor sent. All of them or none go to the kernel.
   */
  includedPorts?: IncludedPorts;
  /** Track established connections: accept and close records. */
  trackConns?: boolean;
  /**
   * Which opening records the kernel sends while tracking: connect outcomes,
   * accepts (both by default). One user space has no use for feeds only the
   * kernel's connection table, whose close records carry the opening's task.
   */
  openings?: { connects: boolean; accepts: boolean; namesOnly?: boolean };
  /** Capture DNS responses (a missing cgroup v2 or a refusal only costs the names). */
  dns?: boolean;
  /**
   * --flows: every connection record is counted into its flow in the kernel, none is
   * sent. Otherwise records are sent, and counted into flows only while the ring is
   * busy (more than OVERFLOW_FILL of it unread).
   */
  flows?: boolean;
  /**
   * Read the current task's fields as plain loads (bpf_get_current_task_btf, Linux
   * 5.11+) rather than probe reads. Default: whether this kernel is 5.11 or later.
   */
  taskBtf?: boolean;
  /** Called once per strategy that failed, with why. */
  onFallback?: (strategy: Strategy, error: Error) => void;
}

/** Ports by side: the peer's (`dport`, `rport`) and this host's (`sport`, `lport`). */
export interface IncludedPorts {
  remote: readonly number[];
  local: readonly number[];
}

/**
 * Whether a kernel of this release (`uname -r`) has bpf_get_current_task_btf(): 5.11
 * and later. A helper is never taken away, so a distribution's backports only make an
 * older kernel read its tasks the slower way.
 * @example taskBtfAvailable("6.1.0-28-amd64") // true
 */
export function taskBtfAvailable(release: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const major = Number(m[1]), minor = Number(m[2]);
  return major > 5 || (major === 5 && minor >= 11);
}

/** Entries of lm_incl_port (bpf/lightmon.bpf.c): an include with more ports stays in user space. */
export const MAX_INCLUDED_PORTS = 1024;

/** The include the kernel applies: undefined when there is none, or it does not fit. */
function kernelInclude(o: { includedPorts?: IncludedPorts }): IncludedPorts | undefined {
  const p = o.includedPorts;
  if (!p || p.remote.length + p.local.length === 0) return undefined;
  return p.remote.length + p.local.length <= MAX_INCLUDED_PORTS ? p : undefined;
}

/** A loaded and attached capture. */
export interface Loaded {
  object: BpfObject;
  strategy: Strategy;
  /** Whether tracefs had to be mounted. */
  mountedTracefs: boolean;
  /**
   * The excluded ports the kernel drops: as many as its table holds. The rest are
   * dropped by the user-space filter, which always applies the whole -exclude.
   */
  kernelDports: readonly number[];
  /** The -include ports the kernel keeps to, or undefined (none, or too many: user space alone decides). */
  kernelIncluded?: IncludedPorts;
  /** DNS capture: where it is attached and whether per network namespace, or why not (undefined: not asked for). */
  dns?: { root: string; perNetns: boolean; senders: boolean } | { error: string };
}

/** Raised when no strategy could be loaded; `errors` says why for each. */
export class NoStrategyError extends Error {
  readonly errors: ReadonlyMap<Strategy, Error>;
  constructor(errors: Map<Strategy, Error>) {
    const parts = [...errors].map(([s, e]) => `${s}: ${e.message}`);
    super(
      errors.size === 1
        ? `The ${[...errors.keys()][0]} capture strategy does not work on this kernel (${
          parts[0]
        }); try --strategy auto`
        : `No capture strategy works on this kernel (${parts.join("; ")})`,
    );
    this.name = "NoStrategyError";
    this.errors = errors;
  }
}

function configBytes(strategy: Strategy, o: Omit<LoadOptions, "strategies">): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(CONFIG_SIZE);
  const v = new DataView(bytes.buffer);
  const stashOnState = strategy === "tp_btf" || strategy === "tracepoint";
  v.setUint32(CONFIG.stash_on_state.offset, stashOnState ? 1 : 0, true);
  v.setUint32(CONFIG.ipv4_only.offset, o.ipv4Only ? 1 : 0, true);
  v.setUint32(CONFIG.self_pid.offset, o.selfPid, true);
  v.setUint32(CONFIG.filter_dports.offset, o.excludedDports?.length ? 1 : 0, true);
  v.setUint32(CONFIG.track_conns.offset, o.trackConns ? 1 : 0, true);
  // Untracked, every connect outcome is the event itself.
  const open = (o.trackConns && o.openings) || { connects: true, accepts: true };
  const names = "namesOnly" in open && open.namesOnly ? OPEN_NAMES_ONLY : 0;
  v.setUint32(
    CONFIG.openings.offset,
    (open.connects ? OPEN_CONNECTS : 0) | (open.accepts ? OPEN_ACCEPTS : 0) | names,
    true,
  );
  const incl = kernelInclude(o);
  const sides = !incl ? 0 : (incl.remote.length ? INCL_REMOTE : 0) | (incl.local.length ? INCL_LOCAL : 0);
  v.setUint32(CONFIG.include_ports.offset, sides, true);
  v.setUint32(CONFIG.flows.offset, o.flows ? 1 : 0, true);
  v.setUint32(CONFIG.overflow_at.offset, o.flows ? 0 : Math.floor(ringBytes(o) * OVERFLOW_FILL), true);
  v.setUint32(CONFIG.task_btf.offset, (o.taskBtf ?? taskBtfAvailable(Deno.osRelease())) ? 1 : 0, true);
  return bytes;
}

/**
 * libbpf attaches kprobes through the kprobe PMU or, failing that, tracefs's
 * kprobe_events. Without either, loading the whole object only to fail at attach
 * costs tens of milliseconds: say so at once.
 */
function kprobesAvailable(): boolean {
  for (
    const f of [
      "/sys/bus/event_source/devices/kprobe/type",
      "/sys/kernel/tracing/kprobe_events",
      "/sys/kernel/debug/tracing/kprobe_events",
    ]
  ) {
    try {
      Deno.statSync(f);
      return true;
    } catch { /* try the next */ }
  }
  return false;
}

/**
 * Load one strategy. What the kernel refuses at once is thrown here, synchronously:
 * the caller moves on to the next strategy without giving up the thread, so the
 * load that is tried starts (on its own thread) before loadCapture returns.
 */
function loadOne(strategy: Strategy, o: LoadOptions): Promise<Loaded> {
  if (strategy === "kprobe" && !kprobesAvailable()) {
    throw new BpfError("attach lm_kprobe_conn", 2 /* ENOENT, as libbpf would say */);
  }
  if (strategy === "fentry" && fentryRefused()) throw new BpfError("load lm_fentry_conn", 1 /* EPERM */);
  return loadVariants(strategy, o);
}

async function loadVariants(strategy: Strategy, o: LoadOptions): Promise<Loaded> {
  if (!o.dns) return await loadWith(strategy, o, false);
  try {
    return await loadWith(strategy, o, true);
  } catch (e) {
    // Without the DNS programs: if that loads, they were the trouble.
    const loaded = await loadWith(strategy, o, false);
    return { ...loaded, dns: { error: e instanceof Error ? e.message : String(e) } };
  }
}

async function loadWith(strategy: Strategy, o: LoadOptions, dns: boolean): Promise<Loaded> {
  let mountedTracefs = false;
  if (strategy === "tracepoint" || o.trackConns) mountedTracefs = ensureTracefs().mounted;
  const attached = [...PROGRAMS[strategy], ...(o.trackConns ? ACCEPT_PROGRAMS : [])];
  // The snapshot iterator (Linux 5.8+, as the ring buffer) loads with the capture
  // but is never attached here: snapshot.ts runs it once.
  const perNetns = dns && cgroupSkbHasNetnsCookie();
  const dnsPrograms = !dns ? [] : DNS_PROGRAMS[perNetns ? "netns" : cgroupSkbKnowsTask() ? "host" : "bare"];
  const object = await openWith([...attached, SNAPSHOT_PROGRAM, ...dnsPrograms], strategy, o);
  try {
    for (const p of attached) object.attach(p);
    const kernelDports = (o.excludedDports ?? []).slice(0, object.mapMaxEntries("lm_excl_dport"));
    return {
      object,
      strategy,
      mountedTracefs,
      kernelDports,
      kernelIncluded: kernelInclude(o),
      dns: dnsPrograms.length ? attachDns(object, dnsPrograms) : undefined,
    };
  } catch (e) {
    object.close();
    throw e;
  }
}

/** Attach the DNS program to the cgroup v2 root; a failure is said, not fatal. */
function attachDns(
  object: BpfObject,
  programs: readonly string[],
): { root: string; perNetns: boolean; senders: boolean } | { error: string } {
  const root = cgroup2Root();
  if (!root) return { error: "no cgroup v2 hierarchy is mounted" };
  let fd = -1;
  try {
    fd = openDirectory(root);
    const links = [];
    try {
      for (const p of programs) links.push(object.attachCgroup(p, fd));
    } catch (e) {
      links.forEach((l) => l.close()); // responses without their queries would teach nothing
      throw e;
    }
    return { root, perNetns: programs === DNS_PROGRAMS.netns, senders: programs !== DNS_PROGRAMS.bare };
  } catch (e) {
    return { error: `${root}: ${e instanceof Error ? e.message : e}` };
  } finally {
    if (fd >= 0) libc().close(fd);
  }
}

/** Open and load the object with only `programs` and the config for `strategy`. */
async function openWith(
  programs: readonly string[],
  strategy: Strategy,
  o: Omit<LoadOptions, "strategies">,
): Promise<BpfObject> {
  const object = BpfObject.open(o.image, "lightmon");
  try {
    const wanted = new Set(programs);
    for (const p of ALL_PROGRAMS) object.setAutoload(p, wanted.has(p));
    object.setInitialValue(".rodata", configBytes(strategy, o));
    // Accepts and closes make four records of a connection: four times the ring (without accepts, two or three).
    if (o.trackConns) object.setMaxEntries("lm_events", ringBytes(o));
    await object.loadInBackground();
    for (const port of (o.excludedDports ?? []).slice(0, object.mapMaxEntries("lm_excl_dport"))) {
      object.updateElem("lm_excl_dport", new Uint8Array(new Uint16Array([port]).buffer), new Uint8Array([1]));
    }
    const incl = kernelInclude(o);
    const keys = !incl ? [] : [...incl.remote.map((p) => PORT_REMOTE | p), ...incl.local.map((p) => PORT_LOCAL | p)];
    for (const key of keys) {
      object.updateElem("lm_incl_port", new Uint8Array(new Uint32Array([key]).buffer), new Uint8Array([1]));
    }
    return object;
  } catch (e) {
    object.close();
    throw e;
  }
}

/**
 * What an errno means for a strategy, once privileges are known to be there (the
 * preflight checked them): EPERM from fentry is the kernel's refusal, not ours.
 */
function explain(strategy: Strategy, e: BpfError): BpfError {
  if ((strategy === "fentry") && e.code === "EPERM") {
    return new BpfError(e.what, e.errno, "this kernel refuses fentry programs (lockdown, or no BPF trampoline)");
  }
  if (strategy === "kprobe" && (e.code === "ENOENT" || e.code === "EOPNOTSUPP")) {
    return new BpfError(e.what, e.errno, "this kernel has no kprobes (CONFIG_KPROBES) for tcp_connect");
  }
  return e;
}

/**
 * Load and attach with the first strategy that works. The loads run on another
 * thread (BpfObject.loadInBackground), started before this returns: the caller's
 * start-up goes on meanwhile. libbpf frees the kernel's BTF after each load: the
 * caller returns that memory to the system (releaseFreeMemory) once started.
 */
export async function loadCapture(o: LoadOptions): Promise<Loaded> {
  const errors = new Map<Strategy, Error>();
  for (const s of o.strategies) {
    try {
      return await loadOne(s, o);
    } catch (e) {
      if (!(e instanceof BpfError)) throw e;
      const why = explain(s, e);
      errors.set(s, why);
      o.onFallback?.(s, why);
    }
  }
  throw new NoStrategyError(errors);
}

/**
 * Which strategies this kernel allows: each is loaded and attached, then closed
 * at once. Tracefs is not mounted for the probe; without it the classic
 * tracepoint answer says so.
 */
export async function probeStrategies(image: Uint8Array<ArrayBuffer>): Promise<Map<Strategy, string>> {
  const out = new Map<Strategy, string>();
  for (const s of STRATEGIES) {
    if (s === "tracepoint" && !tracefsMounted()) {
      out.set(s, "yes, once tracefs is mounted (lightmon mounts it)");
      continue;
    }
    try {
      (await loadOne(s, { image, strategies: [s], ipv4Only: false, selfPid: Deno.pid })).object.close();
      out.set(s, "yes");
    } catch (e) {
      out.set(s, e instanceof BpfError ? `no (${e.code})` : `no (${e instanceof Error ? e.message : e})`);
    }
  }
  releaseFreeMemory();
  return out;
}

/**
 * The kernel side's counters by name: lm_counters', and `recursionMissed`, the
 * kernel's own count of the attached programs' runs it skipped (BpfObject.programStats).
 */
export type KernelCounters = Record<(typeof COUNTERS)[number] | "recursionMissed", bigint>;

/** Read the kernel-side counters by name. */
export function readCounters(object: BpfObject): KernelCounters {
  const values = object.readPerCpuCounters("lm_counters", COUNTERS.length);
  const named = Object.fromEntries(COUNTERS.map((name, i) => [name, values[i]])) as Record<
    (typeof COUNTERS)[number],
    bigint
  >;
  return { ...named, recursionMissed: object.programStats().recursionMisses };
}
