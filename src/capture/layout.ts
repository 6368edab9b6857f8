/**
 * Offsets and sizes of the records in bpf/lightmon.h, as the decoder reads them.
 * tests/layout_test.ts checks every entry against the compiled object's BTF.
 * @module
 */
import { type Status, STATUSES } from "../event.ts";

/** A field's place in a record. */
export interface FieldPos {
  readonly offset: number;
  readonly size: number;
}

/** struct lm_conn_event */
export const CONN = {
  ts_ns: { offset: 0, size: 8 },
  kind: { offset: 8, size: 4 },
  pid: { offset: 12, size: 4 },
  start_ns: { offset: 16, size: 8 },
  cgroup_id: { offset: 24, size: 8 },
  proc_start_ns: { offset: 32, size: 8 },
  tid: { offset: 40, size: 4 },
  ppid: { offset: 44, size: 4 },
  uid: { offset: 48, size: 4 },
  gid: { offset: 52, size: 4 },
  mntns: { offset: 56, size: 4 },
  netns: { offset: 60, size: 4 },
  sk_err: { offset: 64, size: 4 },
  sport: { offset: 68, size: 2 },
  dport: { offset: 70, size: 2 },
  family: { offset: 72, size: 2 },
  status: { offset: 74, size: 1 },
  flags: { offset: 75, size: 1 },
  saddr: { offset: 76, size: 16 },
  daddr: { offset: 92, size: 16 },
  comm: { offset: 108, size: 16 },
  cgroup_hierarchy: { offset: 124, size: 4 },
  cgroup_key: { offset: 128, size: 8 },
  retransmits: { offset: 136, size: 4 },
  srtt_us: { offset: 140, size: 4 },
  conn_id: { offset: 144, size: 8 },
  bytes_sent: { offset: 152, size: 8 },
  bytes_received: { offset: 160, size: 8 },
  netns_cookie: { offset: 168, size: 8 },
  closed_by: { offset: 176, size: 1 },
  latency_us: { offset: 180, size: 4 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_conn_event) */
export const CONN_SIZE = 184;

/** struct lm_cgroup_key: lm_cgroups' key (a record's cgroup_key and cgroup_hierarchy) */
export const CGROUP_KEY = {
  id: { offset: 0, size: 8 },
  hierarchy: { offset: 8, size: 4 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_cgroup_key) */
export const CGROUP_KEY_SIZE = 16;

/** struct lm_cgroup_names: lm_cgroups' value */
export const CGROUP_NAMES = {
  cgroup: { offset: 0, size: 96 },
  cgroup_parent: { offset: 96, size: 96 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_cgroup_names) */
export const CGROUP_NAMES_SIZE = 192;

/** lm_conn_event.flags */
export const FLAG_INBOUND = 0x2;
export const FLAG_EXISTING = 0x4;
export const FLAG_FIN_ACKED = 0x8;
export const FLAG_FIN_RECEIVED = 0x10;
/** enum lm_closed_by, by value. */
export const CLOSED_BY = ["", "local", "remote", "reset"] as const;

/** struct lm_exec_event */
export const EXEC = {
  ts_ns: { offset: 0, size: 8 },
  kind: { offset: 8, size: 4 },
  pid: { offset: 12, size: 4 },
  proc_start_ns: { offset: 16, size: 8 },
  ppid: { offset: 24, size: 4 },
  uid: { offset: 28, size: 4 },
  gid: { offset: 32, size: 4 },
  args_len: { offset: 36, size: 4 },
  filename_len: { offset: 40, size: 4 },
  mntns: { offset: 44, size: 4 },
  cwd_len: { offset: 48, size: 4 },
  cwd_flags: { offset: 52, size: 4 },
  comm: { offset: 56, size: 16 },
  filename: { offset: 72, size: 256 },
  args: { offset: 328, size: 512 },
  cwd: { offset: 840, size: 768 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_exec_event) */
export const EXEC_SIZE = 1608;
/** LM_CWD_NAME: one slot of lm_exec_event.cwd */
export const CWD_NAME = 48;
/** lm_exec_event.cwd_flags: the walk reached the process's root. */
export const CWD_COMPLETE = 0x1;

/** struct lm_exit_event */
export const EXIT = {
  ts_ns: { offset: 0, size: 8 },
  kind: { offset: 8, size: 4 },
  pid: { offset: 12, size: 4 },
  proc_start_ns: { offset: 16, size: 8 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_exit_event) */
export const EXIT_SIZE = 24;

/** struct lm_fork_event */
export const FORK = {
  ts_ns: { offset: 0, size: 8 },
  kind: { offset: 8, size: 4 },
  pid: { offset: 12, size: 4 },
  proc_start_ns: { offset: 16, size: 8 },
  parent_start_ns: { offset: 24, size: 8 },
  ppid: { offset: 32, size: 4 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_fork_event) */
export const FORK_SIZE = 40;

/** struct lm_dns_event */
export const DNS = {
  ts_ns: { offset: 0, size: 8 },
  kind: { offset: 8, size: 4 },
  len: { offset: 12, size: 4 },
  netns_cookie: { offset: 16, size: 8 },
  cgroup_id: { offset: 24, size: 8 },
  payload_len: { offset: 32, size: 4 },
  family: { offset: 36, size: 2 },
  dport: { offset: 38, size: 2 },
  proto: { offset: 40, size: 1 },
  saddr: { offset: 48, size: 16 },
  daddr: { offset: 64, size: 16 },
  data: { offset: 80, size: 1024 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_dns_event) */
export const DNS_SIZE = 1104;

/** struct lm_dns_query */
export const DNS_QUERY = {
  ts_ns: { offset: 0, size: 8 },
  kind: { offset: 8, size: 4 },
  pid: { offset: 12, size: 4 },
  netns_cookie: { offset: 16, size: 8 },
  cgroup_id: { offset: 24, size: 8 },
  proc_start_ns: { offset: 32, size: 8 },
  tid: { offset: 40, size: 4 },
  uid: { offset: 44, size: 4 },
  sport: { offset: 48, size: 2 },
  dns_id: { offset: 50, size: 2 },
  family: { offset: 52, size: 2 },
  len: { offset: 54, size: 2 },
  comm: { offset: 56, size: 16 },
  cgroup: { offset: 72, size: 96 },
  cgroup_parent: { offset: 168, size: 96 },
  daddr: { offset: 264, size: 16 },
  data: { offset: 280, size: 512 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_dns_query) */
export const DNS_QUERY_SIZE = 792;

/** struct lm_config, the .rodata global `lm_cfg` */
export const CONFIG = {
  stash_on_state: { offset: 0, size: 4 },
  ipv4_only: { offset: 4, size: 4 },
  self_pid: { offset: 8, size: 4 },
  filter_dports: { offset: 12, size: 4 },
  track_conns: { offset: 16, size: 4 },
  openings: { offset: 20, size: 4 },
  include_ports: { offset: 24, size: 4 },
  flows: { offset: 28, size: 4 },
  overflow_at: { offset: 32, size: 4 },
  task_btf: { offset: 36, size: 4 },
} as const satisfies Record<string, FieldPos>;
/** lm_config.openings bits (LM_OPEN_* in bpf/lightmon.h): which opening records the kernel sends. */
export const OPEN_CONNECTS = 1;
export const OPEN_ACCEPTS = 2;
/** Connects are sent only for the DNS names their closes take: with the ring busy, not at all (never as flows). */
export const OPEN_NAMES_ONLY = 4;
/** lm_config.include_ports bits and lm_incl_port's keys (LM_INCL_*, LM_PORT_* in bpf/lightmon.h). */
export const INCL_REMOTE = 1;
export const INCL_LOCAL = 2;
export const PORT_REMOTE = 1 << 16;
export const PORT_LOCAL = 2 << 16;
/** sizeof(struct lm_config) */
export const CONFIG_SIZE = 40;

/** struct lm_flow_key: lm_flows_0/lm_flows_1's key */
export const FLOW_KEY = {
  cgroup_key: { offset: 0, size: 8 },
  proc_start_ns: { offset: 8, size: 8 },
  netns_cookie: { offset: 16, size: 8 },
  cgroup_id: { offset: 24, size: 8 },
  cgroup_hierarchy: { offset: 32, size: 4 },
  pid: { offset: 36, size: 4 },
  uid: { offset: 40, size: 4 },
  netns: { offset: 44, size: 4 },
  addr: { offset: 48, size: 16 },
  port: { offset: 64, size: 2 },
  lport: { offset: 66, size: 2 },
  family: { offset: 68, size: 2 },
  flags: { offset: 70, size: 1 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_flow_key) */
export const FLOW_KEY_SIZE = 72;
/** lm_flow_key.flags (LM_FLOW_* in bpf/lightmon.h) */
export const FLOW_INBOUND = 0x1;
export const FLOW_OVERFLOW = 0x2;
export const FLOW_FOLDED = 0x4;
export const FLOW_EXISTING = 0x8;

/** struct lm_flow_stats: a flow's counts for one interval */
export const FLOW_STATS = {
  first_ns: { offset: 0, size: 8 },
  last_ns: { offset: 8, size: 8 },
  connections: { offset: 16, size: 8 },
  closes: { offset: 24, size: 8 },
  bytes_sent: { offset: 32, size: 8 },
  bytes_received: { offset: 40, size: 8 },
  longest_ns: { offset: 48, size: 8 },
  statuses: { offset: 56, size: 128 },
  ppid: { offset: 184, size: 4 },
  gid: { offset: 188, size: 4 },
  mntns: { offset: 192, size: 4 },
  comm: { offset: 200, size: 16 },
} as const satisfies Record<string, FieldPos>;
/** sizeof(struct lm_flow_stats) */
export const FLOW_STATS_SIZE = 216;

/** enum lm_kind */
export const KIND = { connect: 1, exec: 2, exit: 3, fork: 4, accept: 5, close: 6, dns: 7, dnsQuery: 8 } as const;

/** enum lm_status, by value: the kernel numbers the schema's statuses in their listed order. */
export const STATUS_NAMES: readonly Status[] = STATUSES;

/** enum lm_counter, by index. */
export const COUNTERS = [
  "lost",
  "stashMiss",
  "unstashed",
  "kernelFiltered",
  "lostProcess",
  "connsFull",
  "dnsLost",
  "cgroupForeign",
  "asFlows",
  "flowsFull",
  "folded",
] as const;
