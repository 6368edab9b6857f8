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
] as const;

/** A connection attempt's status. */
export type Status = (typeof STATUSES)[number];

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
  direction: "outbound";
  status: Status;
  /** connect(2) to outcome, in microseconds. */
  latencyUs: number;
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
}

/** Version of the JSON event schema; bumped on any incompatible change. */
export const SCHEMA_VERSION = 1;
