/**
 * The event lightmon emits: one definition, rendered by every output.
 * @module
 */
import type { Status } from "./capture/layout.ts";

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
