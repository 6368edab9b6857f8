/**
 * Raw connect records to full events: who (process, user), where (container, pod)
 * and when (wall clock).
 * @module
 */
import type { RawConnect } from "../capture/decode.ts";
import type { ConnEvent, PeerName } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
import { identifyCgroup } from "./cgroup.ts";
import type { ProcessCache } from "./process_cache.ts";
import type { UserNames } from "./users.ts";

/** What a runtime knows of a container. */
export interface ContainerMeta {
  name: string;
  image: string;
  pod: string;
  namespace: string;
}

/** A source of container metadata (Docker API, containerd state files). */
export interface ContainerSource {
  /** Known metadata for a container id, without waiting. */
  get(id: string): ContainerMeta | undefined;
}

/** Fill an event's container fields from metadata that arrived after enrich(). */
export function fillContainer(e: ConnEvent, meta: ContainerMeta | undefined): void {
  if (!meta) return;
  e.container = meta.name;
  e.image = meta.image;
  e.pod = meta.pod;
  e.namespace = meta.namespace;
}

/** Boot-clock to wall-clock time (BootClock in production). */
export interface WallClock {
  wallNs(bootNs: bigint): bigint;
  /** Re-measure (housekeeping). */
  refresh?(): void;
}

/** Names resolved per network namespace (the DNS stage's cache). */
export interface NameSource {
  lookup(netnsCookie: bigint, address: string): string;
}

/** Who held an address when: the local workloads' addresses (PeerAddresses). */
export interface PeerSource {
  lookup(address: string, wallNs: bigint): PeerName | undefined;
  /** Addresses forgotten for want of room: their records go unnamed. */
  readonly forgotten?: number;
}

/** Everything the enricher reads from. */
export interface EnrichDeps {
  clock: WallClock;
  users: UserNames;
  processes: ProcessCache;
  containers: ContainerSource;
  /** Absent when DNS capture is off. */
  names?: NameSource;
  /** Absent when no runtime names addresses. */
  peers?: PeerSource;
}

const NO_ANSWERS: string[] = [];
const NO_PROCESS = { exe: "", args: [] as string[], source: "unknown" as const };

/**
 * Build a ConnEvent from a raw record. A close record carries the task the kernel
 * kept with its connection; ConnJoin lends it the opening record's process and
 * names as well, so that both say the same.
 */
export function enrich(r: RawConnect, d: EnrichDeps): ConnEvent {
  const close = r.event === "close";
  // A close names the task the kernel kept with its connection (ConnJoin lends the opening record's
  // too); one closed before it was accepted has none. A DNS response's is its query's, if a task sent it.
  const flow = r.flow;
  const noTask = (close || r.event === "dns" || flow !== undefined) && r.pid === 0;
  const proc = noTask ? NO_PROCESS : d.processes.lookup(r.pid, r.procStartNs, r.startNs);
  const cg = identifyCgroup(r.cgroup, r.cgroupParent);
  const meta = cg.containerId ? d.containers.get(cg.containerId) : undefined;
  // The differences are small: one bigint subtraction, then plain numbers (no bigint division per event).
  // asIntN(64) (the same value: both are boot-clock ns) lets the compiler subtract in a machine
  // word, with no bigint made and no call into the runtime to convert it.
  const sinceStartUs = Math.trunc(Number(BigInt.asIntN(64, r.tsNs - r.startNs)) / 1000);
  const wallNs = d.clock.wallNs(r.tsNs);
  return {
    kernelTime: r.tsNs,
    wallNs,
    pid: r.pid,
    tid: r.tid,
    ppid: r.ppid,
    uid: r.uid,
    gid: r.gid,
    // Names from the host's passwd only for host processes: a container has its own.
    // A flow folded for want of room has no process, but its user: who had it.
    user: cg.containerId || (noTask && !flow?.folded) ? "" : d.users.name(r.uid),
    comm: r.comm,
    exe: proc.exe,
    args: proc.args,
    procSource: proc.source,
    family: r.family,
    saddr: r.saddr,
    sport: r.sport,
    daddr: r.daddr,
    dport: r.dport,
    // A close takes its opening record's name (ConnJoin): the answer may have expired by now.
    dnsName: noTask || r.event === "dns" || !d.names ? "" : d.names.lookup(r.netnsCookie, r.daddr),
    event: r.event,
    connId: r.connId,
    direction: r.inbound ? "inbound" : "outbound",
    status: r.status,
    // A close's is its opening record's, kept with the connection in the kernel.
    latencyUs: close ? r.latencyUs : flow ? 0 : sinceStartUs,
    durationMs: close ? Math.trunc(sinceStartUs / 1000) : flow ? Number(flow.longestNs / 1_000_000n) : 0,
    bytesSent: r.bytesSent,
    bytesReceived: r.bytesReceived,
    retransmits: r.retransmits,
    rttUs: r.srttUs,
    closedBy: r.closedBy,
    existing: r.existing,
    query: r.dns?.query ?? "",
    qtype: r.dns?.qtype ?? "",
    rcode: r.dns?.rcode ?? "",
    answers: r.dns?.answers ?? NO_ANSWERS,
    container: meta?.name ?? "",
    containerId: cg.containerId,
    containerRuntime: cg.runtime,
    image: meta?.image ?? "",
    pod: meta?.pod ?? "",
    namespace: meta?.namespace ?? "",
    cgroupId: r.cgroupId,
    mntns: r.mntns,
    netns: r.netns,
    // Who was at the remote address then (a DNS record's is the resolver, a folded flow's is nobody).
    peer: r.event === "dns" || !d.peers || r.daddr === "" ? undefined : d.peers.lookup(r.daddr, wallNs),
    novel: undefined,
    flow: flow && {
      connections: flow.connections,
      statuses: flow.statuses,
      closes: flow.closes,
      firstSeen: d.clock.wallNs(flow.firstNs),
      lastSeen: d.clock.wallNs(flow.lastNs),
      intervalStart: d.clock.wallNs(flow.intervalStartNs),
      intervalEnd: d.clock.wallNs(flow.intervalEndNs),
      cause: flow.cause,
      folded: flow.folded,
      processes: flow.processes,
    },
  };
}

/** The stage that turns raw connects into events: every connection event is seen here. */
export class EnrichStage extends Stage<RawConnect, ConnEvent> {
  readonly name = "enrich";
  override readonly notable: ReadonlySet<string> = new Set(["peerAddressesForgotten"]);
  #deps: EnrichDeps;
  #seen = 0;

  constructor(deps: EnrichDeps) {
    super();
    this.#deps = deps;
  }

  push(r: RawConnect): void {
    this.#seen++;
    this.emit(enrich(r, this.#deps));
  }

  override housekeeping(): void {
    this.#deps.clock.refresh?.();
    this.#deps.users.refresh();
  }

  override counters(): Counters {
    return { seen: this.#seen, peerAddressesForgotten: this.#deps.peers?.forgotten ?? 0 };
  }
}
