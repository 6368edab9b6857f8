/**
 * The event lightmon emits: one definition, rendered by every output. This is the
 * bottom of the house: it imports nothing. `fields.ts` beside it says how each
 * member is named, encoded, filtered and shown.
 * @module
 */

/** Every status an event can carry; the kernel's enum maps onto these names. */
export const STATUSES = [
  "unknown",
  "established",
  "refused",
  "reset",
  "timeout",
  "unreachable",
  "pending",
  "aborted",
  "error",
  "existing",
  "listen",
  "closed",
  "answered",
] as const;

/** A connection attempt's status. */
export type Status = (typeof STATUSES)[number];

/** What a record reports: a connection opened here, accepted here, or ended; a DNS answer; a flow's interval. */
export type EventKind = "connect" | "accept" | "close" | "dns" | "flow";

/** Every event kind `--events` selects, in its order (flow records come with `--flows`, or when the ring is busy). */
export const EVENT_KINDS: readonly EventKind[] = ["connect", "accept", "close", "dns"];

/** Who ended a connection: which side sent the first FIN (or aborted), or the peer's reset. */
export type ClosedBy = "local" | "remote" | "reset";

/**
 * Why a flow record stands for connections: `interval` (`--flows`: counted in the
 * kernel, reported once an interval), `ring-busy` (user space was behind: the
 * kernel counted them instead of reporting them one by one).
 */
export type FlowCause = "interval" | "ring-busy";

/** A flow record's own fields (event `flow`): what its interval counted. */
export interface Flow {
  /** Attempts opened in the interval: connects (at their outcome, or pending), accepts. */
  connections: number;
  /** Records by status, nonzero ones, most first: each outcome, each pending, each accept (`established`). */
  statuses: readonly (readonly [Status, number])[];
  closes: number;
  /** Wall-clock ns of its first and last record in the interval. */
  firstSeen: bigint;
  lastSeen: bigint;
  /** Wall-clock ns: the interval it counts, from the previous read to this one. */
  intervalStart: bigint;
  intervalEnd: bigint;
  cause: FlowCause;
  /** Its owner's share of the kernel's table was used up: all their remote ends in one record. */
  folded: boolean;
  /** Processes of one program in one workload whose connections it counts; `pid` and `args` are the busiest one's. */
  processes: number;
}

/**
 * The workload on this host at a connection's remote address (a container, a
 * pod's sandbox), as its runtime named the address at the connection's time.
 */
export interface PeerName {
  container: string;
  /** The runtime's id for it: a container's 64-hex id, a pod sandbox's id. */
  containerId: string;
  image: string;
  pod: string;
  namespace: string;
}

/** Where the process fields (exe, args) came from. */
export type ProcSource = "exec" | "proc" | "unknown";

/** One TCP connection event after enrichment. */
export interface ConnEvent {
  /** CLOCK_BOOTTIME ns of the event. */
  kernelTime: bigint;
  /** Wall-clock ns since the epoch. */
  wallNs: bigint;
  pid: number;
  tid: number;
  ppid: number;
  uid: number;
  gid: number;
  /** User name, or "" when the uid has no name here. */
  user: string;
  comm: string;
  /** Absolute executable path, or "" when unknown. */
  exe: string;
  args: string[];
  procSource: ProcSource;
  family: 4 | 6;
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
  /** The name this workload (its network namespace) last resolved to `daddr`, or "". */
  dnsName: string;
  event: EventKind;
  /** Joins a connection's connect or accept record to its close record; 0n when not tracked. */
  connId: number;
  direction: "outbound" | "inbound";
  status: Status;
  /** connect(2) to outcome (accept: handshake to accept(2)), in microseconds. */
  latencyUs: number;
  /** Close records only (0, "" or false otherwise): */
  /** Handshake (or lightmon's start, for `existing`) to close, ms. */
  durationMs: number;
  bytesSent: number;
  bytesReceived: number;
  retransmits: number;
  rttUs: number;
  closedBy: ClosedBy | "";
  /** Opened before lightmon started: `durationMs` counts from the start. */
  existing: boolean;
  /** DNS records only (`--events dns`; "" or [] otherwise): the name asked, its type, the answer's code, the answers. */
  query: string;
  qtype: string;
  rcode: string;
  answers: string[];
  container: string;
  containerId: string;
  /** docker, containerd, crio, podman (from the cgroup's name), or "". */
  containerRuntime: string;
  image: string;
  pod: string;
  namespace: string;
  cgroupId: bigint;
  mntns: number;
  netns: number;
  /** The local container or pod at `daddr` when the connection was made; undefined when none is. */
  peer: PeerName | undefined;
  /** With `--baseline`: no rule of the baseline covers this connection's flow; undefined without one, and on DNS records. */
  novel: boolean | undefined;
  /** Flow records only (event `flow`): its counts; `bytesSent`, `bytesReceived` are its closes' totals, `durationMs` the longest. */
  flow: Flow | undefined;
}

/** Version of the JSON event schema; bumped on any incompatible change. */
export const SCHEMA_VERSION = 1;
