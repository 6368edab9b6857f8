// SPDX-License-Identifier: Apache-2.0
/*
 * lightmon's kernel side: outbound TCP connection attempts and exec/exit events.
 *
 * Connect tracking follows the stash-at-SYN_SENT, emit-at-outcome scheme:
 *   CLOSE -> SYN_SENT happens inside connect(2), in the connecting task's context:
 *   stash who connects (pid, uid, cgroup, namespaces) in lm_stash keyed by the socket.
 *   SYN_SENT -> ESTABLISHED / CLOSE usually runs in softirq, where "current" is
 *   whoever was interrupted: emit the stashed context with the addresses, the real
 *   source port and the outcome read from the socket then.
 *   tcp_retransmit_skb in SYN_SENT means the handshake hangs: emit "pending" once.
 *
 * Every hook comes in several program variants (tp_btf, classic tracepoint, fentry,
 * kprobe) that are thin wrappers over one __always_inline handler. The loader picks
 * a strategy by turning autoload off for the variants it does not use.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "lightmon.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define SOCK_DONE 1 /* enum sock_flags: set by tcp_fin() when the peer's FIN arrives */
#define TCP_LISTEN 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define ECONNREFUSED 111
#define ECONNRESET 104
#define EPIPE 32
#define ETIMEDOUT 110
#define EHOSTUNREACH 113
#define ENETUNREACH 101
#define EHOSTDOWN 112
#define ENETDOWN 100

const volatile struct lm_config lm_cfg = {};

/* Emits lm_exit_event into the object's BTF (it is only ever a stack variable), so
 * tests/layout_test.ts can check the decoder against every record type. */
const struct lm_exit_event *lm_btf_anchor_exit __attribute__((unused));
const struct lm_fork_event *lm_btf_anchor_fork __attribute__((unused));
const struct lm_dns_query *lm_btf_anchor_query __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* 4 MiB: ~22k connect records of 184 bytes, half a second at the loopback
	 * limit (~40k/s); user space drains it every few ms. All its pages are
	 * mapped into lightmon, so it counts in RSS. The loader resizes it when
	 * connections are tracked. */
	__uint(max_entries, 4 * 1024 * 1024);
} lm_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* One entry per handshake in flight, allocated when used: a preallocated (or
	 * LRU) map of 64k 360-byte entries (184 now) took ~40 ms of start-up and 24 MB of kernel
	 * memory for what is, most of the time, a few dozen handshakes. Every entry is
	 * deleted at the outcome (ESTABLISHED or CLOSE, which every SYN_SENT socket
	 * reaches); a socket reused at the same address overwrites its entry. Full, a
	 * connect is reported at once instead (see stash_connect). */
	__uint(max_entries, LM_STASH_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64); /* struct sock * */
	__type(value, struct lm_conn_event);
} lm_stash SEC(".maps");

/* Handshakes in flight one owner may hold in lm_stash: a sixteenth of it. */
#define LM_STASH_SHARE (LM_STASH_ENTRIES / 16)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	/* Each owner's entries in lm_stash (see stash_owner), so that no user can fill
	 * the stash others depend on: one user's handshakes that never complete (SYNs
	 * dropped, TCP_SYNCNT high) take at most LM_STASH_SHARE. LRU: an owner idle for
	 * long is forgotten; forgetting one that is busy only lets it start over. */
	__uint(max_entries, 8192);
	__type(key, __u64);   /* stash_owner() */
	__type(value, __u32); /* its entries in lm_stash */
} lm_stash_share SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Destination ports that -exclude drops whatever else an event says (a top-level
	 * `dport=N` alternative), filled by the loader: excluded traffic costs no ring
	 * space. 1024 ports is more than any exclusion list we have seen. */
	__uint(max_entries, 1024);
	__type(key, __u16); /* host order */
	__type(value, __u8);
} lm_excl_dport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	/* The names of cgroups whose tasks made connection records, read once per cgroup
	 * (see read_cgroup); user space reads them by the records' keys. LRU: a host with
	 * more cgroups at once re-reads the ones it forgot (a key user space cannot find
	 * any more is counted there, and its records go without names). */
	__uint(max_entries, LM_CGROUPS_ENTRIES);
	__type(key, struct lm_cgroup_key);
	__type(value, struct lm_cgroup_names);
} lm_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lm_cgroup_names);
} lm_cgroup_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* The ports an -include made only of port alternatives (`rport=443 || lport=22`)
	 * keeps, by side (LM_PORT_REMOTE | port, LM_PORT_LOCAL | port), filled by the
	 * loader: a connection with none of them is never tracked nor sent. All or none:
	 * the loader does not push an include whose ports do not fit. */
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} lm_incl_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LM_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lm_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	/* Scratch space: an exec record is larger than the 512-byte BPF stack. */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lm_exec_event);
} lm_exec_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lm_conn_event);
} lm_conn_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Established connections, from the handshake to the close, when accept or close
	 * records are asked for. Allocated per connection (a preallocated table this size
	 * would cost ~25 MB and tens of ms at start-up); a host with more connections open
	 * at once loses close records for the rest, counted (LM_CTR_CONNS_FULL). No owner takes
	 * more than LM_CONNS_SHARE of it (lm_conns_share): one user's connections cannot cost
	 * another's their close records. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, LM_CONNS_ENTRIES);
	__type(key, __u64); /* struct sock * */
	__type(value, struct lm_conn_state);
} lm_conns SEC(".maps");

/* Connections one owner may have tracked at once: a sixteenth of lm_conns. */
#define LM_CONNS_SHARE (LM_CONNS_ENTRIES / 16)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	/* Each owner's entries in lm_conns (see conn_owner), as lm_stash_share for the stash. */
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u32);
} lm_conns_share SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Sockets the start-up snapshot has written: a socket shared by many processes (a
	 * listener inherited by every worker) is written once, not once per process. Full,
	 * the rest are written as found (user space drops the repeats, within its bound). */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, LM_CONNS_ENTRIES);
	__type(key, __u64); /* struct sock * */
	__type(value, __u8);
} lm_iter_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	/* A connection's state is built here: larger than is wise on the BPF stack. */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lm_conn_state);
} lm_state_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	/* Per-CPU sequence for connection ids: no atomics, so 5.8+ kernels load it. */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lm_conn_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	/* Close records are built in softirq too: their own scratch, so one can never
	 * overwrite an accept or connect record being built on the same CPU. */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lm_conn_event);
} lm_close_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	/* A DNS record is larger than the BPF stack. */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lm_dns_event);
} lm_dns_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lm_dns_query);
} lm_query_scratch SEC(".maps");

/*
 * Flows: connection records counted per flow instead of sent (lm_flow_key). Two
 * tables take turns: the programs count into the one lm_flow_gen names; user space
 * turns it to the other, waits for the programs still counting into the first, then
 * reads and empties it. Allocated per flow: a storm of one process's connections to
 * one service is one entry.
 */
#define LM_FLOW_TABLE(name)                                  \
	struct {                                             \
		__uint(type, BPF_MAP_TYPE_HASH);             \
		__uint(map_flags, BPF_F_NO_PREALLOC);        \
		__uint(max_entries, LM_FLOWS_ENTRIES);       \
		__type(key, struct lm_flow_key);             \
		__type(value, struct lm_flow_stats);         \
	} name SEC(".maps")

LM_FLOW_TABLE(lm_flows_0);
LM_FLOW_TABLE(lm_flows_1);

/* Flows one owner may have in a table: a sixteenth of it. Beyond, its records are
 * counted in one fold per owner and direction (no remote end), so that no one user
 * can fill the table every other workload's flows are counted in. */
#define LM_FLOWS_SHARE (LM_FLOWS_ENTRIES / 16)

#define LM_FLOW_SHARES(name)                         \
	struct {                                     \
		__uint(type, BPF_MAP_TYPE_LRU_HASH); \
		__uint(max_entries, 8192);           \
		__type(key, __u64);                  \
		__type(value, __u32);                \
	} name SEC(".maps")

/* Each owner's entries in lm_flows_0 and lm_flows_1 (emptied with their table). */
LM_FLOW_SHARES(lm_flows_share_0);
LM_FLOW_SHARES(lm_flows_share_1);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	/* Which lm_flows_* table the programs count into: 0 or 1, turned by user space. */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lm_flow_gen SEC(".maps");

/*
 * No program uses these. Updating a map-in-map returns only once every program that
 * could be running has finished (the kernel waits for an RCU grace period: every
 * program runs inside one). So user space, after turning lm_flow_gen, sets
 * lm_sync[0] to lm_sync_inner and then knows that no program still counts into the
 * table it turned from, however long one was held off its CPU (a VM's vCPU can be).
 */
#define LM_SYNC_INNER                            \
	struct {                                 \
		__uint(type, BPF_MAP_TYPE_ARRAY); \
		__uint(max_entries, 1);          \
		__type(key, __u32);              \
		__type(value, __u32);            \
	}

LM_SYNC_INNER lm_sync_inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, LM_SYNC_INNER);
} lm_sync SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lm_counters, &idx);

	if (v)
		*v += 1;
}

/*
 * A field of a kernel object: a socket a program was given, or the current task. Where
 * `btf` says the pointer is BTF-typed (a tp_btf or fentry argument, the task from
 * bpf_get_current_task_btf(), or a pointer read from one) it is a plain load, which the
 * verifier checks and makes fault-safe; where it is a plain number (a classic
 * tracepoint's, a kprobe's, one read out of another object) it is bpf_probe_read_kernel,
 * a helper call. Every program passes a constant, so the other branch is compiled out of
 * it (the task's flag is lm_cfg.task_btf, which the verifier knows). Only struct sock's
 * own fields: the verifier types the pointer as the program's argument has it, so a
 * field of the inet_sock or tcp_sock around it is read the slow way.
 */
#define LM_FIELD(btf, p, field) ((btf) ? (p)->field : BPF_CORE_READ(p, field))

/* Whether -include can keep a connection with these ports (host order). */
static __always_inline bool ports_included(__u16 sport, __u16 dport)
{
	__u32 key;

	if (!lm_cfg.include_ports)
		return true;
	key = LM_PORT_REMOTE | dport;
	if ((lm_cfg.include_ports & LM_INCL_REMOTE) && bpf_map_lookup_elem(&lm_incl_port, &key))
		return true;
	key = LM_PORT_LOCAL | sport;
	return (lm_cfg.include_ports & LM_INCL_LOCAL) && bpf_map_lookup_elem(&lm_incl_port, &key);
}

/* Whether -include can keep this socket's connection, by its ports now. */
static __always_inline bool sock_included(const struct sock *sk, bool btf)
{
	if (!lm_cfg.include_ports)
		return true;
	return ports_included(bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport)),
			      bpf_ntohs(LM_FIELD(btf, sk, __sk_common.skc_dport)));
}

/*
 * Whether the kernel's filters drop a connect at connect(): -exclude's dports, and
 * -include's ports as far as they are known there. At tcp_connect() (fentry, kprobe)
 * the source port is bound; at CLOSE->SYN_SENT (the tracepoints) it is not yet, and
 * only an include of remote ports alone can tell (the outcome checks the rest).
 */
static __always_inline bool dropped_at_connect(const struct sock *sk, bool btf)
{
	__u16 dport;

	if (!lm_cfg.filter_dports && !lm_cfg.include_ports)
		return false;
	dport = bpf_ntohs(LM_FIELD(btf, sk, __sk_common.skc_dport));
	if (lm_cfg.filter_dports && bpf_map_lookup_elem(&lm_excl_dport, &dport))
		return true;
	if (!lm_cfg.stash_on_state)
		return !sock_included(sk, btf);
	return lm_cfg.include_ports == LM_INCL_REMOTE && !ports_included(0, dport);
}

/* Output one record; a full ring counts against `lost` (LM_CTR_LOST for connection
 * events, LM_CTR_LOST_PROCESS for the process records that only feed attribution). */
static __always_inline void emit(void *data, __u64 size, __u32 lost)
{
	if (bpf_ringbuf_output(&lm_events, data, size, 0))
		count(lost);
}

static __always_inline const char *kn_name(struct kernfs_node *kn)
{
	return kn ? BPF_CORE_READ(kn, name) : 0;
}

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return (struct kernfs_node *)BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
}

/*
 * Whether root made this cgroup and every one above it: no directory on the way
 * was chowned (kernfs keeps an owner only once one is set) or may be written by
 * others. A delegated subtree (every systemd user session has one: its user owns
 * it) fails, so names its user chose, a running container's id among them, are
 * never reported as a container's.
 */
static __always_inline bool cgroup_roots(struct kernfs_node *kn)
{
#pragma unroll
	for (int i = 0; i < LM_CGROUP_DEPTH; i++) {
		if (!kn)
			return true;
		struct kernfs_iattrs *ia = BPF_CORE_READ(kn, iattr);

		if (ia && BPF_CORE_READ(ia, ia_uid.val) != 0)
			return false;
		if (BPF_CORE_READ(kn, mode) & 0022)
			return false;
		kn = kn_parent(kn);
	}
	return !kn;
}

/*
 * The cgroup that names a task: prefer the unified (v2) hierarchy; on a v1 or hybrid
 * host, where runtimes place containers in the v1 controllers and the task sits at
 * the v2 root, fall back to the memory controller's cgroup. NULL at a root: the host's.
 */
static __always_inline struct cgroup *naming_cgroup(struct task_struct *task, bool btf)
{
	struct css_set *cs = LM_FIELD(btf, task, cgroups);
	struct cgroup *cg = LM_FIELD(btf, cs, dfl_cgrp);

	if (!cg || LM_FIELD(btf, cg, level) == 0) {
		int mem = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
		struct cgroup_subsys_state *css = 0;

		if (mem >= 0 && mem < 14)
			css = LM_FIELD(btf, cs, subsys[mem]);
		if (css)
			cg = LM_FIELD(btf, css, cgroup);
	}
	return cg && LM_FIELD(btf, cg, level) > 0 ? cg : 0;
}

/* A cgroup's leaf name, and its parent's unless the parent is the root. */
static __always_inline void read_names(struct cgroup *cg, struct kernfs_node *kn, char *leaf, char *parent)
{
	bpf_probe_read_kernel_str(leaf, LM_CGROUP_NAME_LEN, kn_name(kn));
	if (BPF_CORE_READ(cg, level) > 1)
		bpf_probe_read_kernel_str(parent, LM_CGROUP_NAME_LEN, kn_name(kn_parent(kn)));
}

/*
 * The task's cgroup leaf and parent names (naming_cgroup's). Names of a cgroup root
 * did not make are left out (counted): the task is then the host's.
 */
static __always_inline void read_cgroup_names(struct task_struct *task, char *leaf, char *parent)
{
	struct cgroup *cg = naming_cgroup(task, false);

	if (!cg)
		return;
	struct kernfs_node *kn = BPF_CORE_READ(cg, kn);

	if (!cgroup_roots(kn)) {
		count(LM_CTR_CGROUP_FOREIGN);
		return;
	}
	read_names(cg, kn, leaf, parent);
}

/*
 * The task's naming cgroup for a connection record: its key, with its names in
 * lm_cgroups. The ownership walk and the names are read once per cgroup root made, at
 * its first connection, not at every one. Its names were root's when read: a cgroup
 * cannot be renamed by anyone who could not have named it (rename needs its parent,
 * which was root's), and its children are cgroups of their own, walked at theirs. A
 * cgroup root did not make takes no place in lm_cgroups (it is walked, and counted, at
 * each connection): a user who may make cgroups (every systemd session may) cannot push
 * the containers' names out of the table by connecting from thousands of its own.
 */
static __always_inline void read_cgroup(struct task_struct *task, struct lm_conn_event *e, bool btf)
{
	struct cgroup *cg = naming_cgroup(task, btf);
	__u32 zero = 0;

	if (!cg)
		return;
	struct kernfs_node *kn = LM_FIELD(btf, cg, kn);
	struct cgroup_root *root = LM_FIELD(btf, cg, root);
	struct lm_cgroup_key key = {
		.id = LM_FIELD(btf, kn, id),
		.hierarchy = LM_FIELD(btf, root, hierarchy_id),
	};
	struct lm_cgroup_names *n = bpf_map_lookup_elem(&lm_cgroups, &key);

	if (!n) {
		n = bpf_map_lookup_elem(&lm_cgroup_scratch, &zero);
		if (!n)
			return;
		if (!cgroup_roots(kn)) {
			count(LM_CTR_CGROUP_FOREIGN);
			return;
		}
		__builtin_memset(n, 0, sizeof(*n));
		read_names(cg, kn, n->cgroup, n->cgroup_parent);
		bpf_map_update_elem(&lm_cgroups, &key, n, BPF_ANY);
	}
	e->cgroup_key = key.id;
	e->cgroup_hierarchy = key.hierarchy;
}

static __always_inline bool is_v4_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* Who the current task is: the identity half of a connect or accept record. */
/*
 * Who the current task is: the identity half of a connect or accept record. On 5.11+
 * (lm_cfg.task_btf) the task is BTF-typed and its fields, and those of the objects it
 * points to, are plain loads; before, probe reads. The verifier prunes the branch the
 * kernel's constant rules out, so an older kernel never sees the newer helper.
 */
static __always_inline void fill_task(struct lm_conn_event *e, __u64 id)
{
	bool btf = lm_cfg.task_btf;
	struct task_struct *task = btf ? bpf_get_current_task_btf() : (struct task_struct *)bpf_get_current_task();
	__u64 uidgid = bpf_get_current_uid_gid();

	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->cgroup_id = bpf_get_current_cgroup_id();
	struct task_struct *leader = LM_FIELD(btf, task, group_leader);
	struct task_struct *parent = LM_FIELD(btf, task, real_parent);
	struct nsproxy *nsproxy = LM_FIELD(btf, task, nsproxy);
	struct mnt_namespace *mnt_ns = nsproxy ? LM_FIELD(btf, nsproxy, mnt_ns) : 0;

	e->proc_start_ns = LM_FIELD(btf, leader, start_boottime);
	e->ppid = LM_FIELD(btf, parent, tgid);
	e->uid = (__u32)uidgid;
	e->gid = uidgid >> 32;
	e->mntns = mnt_ns ? LM_FIELD(btf, mnt_ns, ns.inum) : 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	read_cgroup(task, e, btf);
}

/* Whose share a stash entry counts against: its uid; root's (host root, or root in
 * a container without a user namespace) by cgroup, so that one container's root
 * cannot take the host's share. */
static __always_inline __u64 stash_owner(const struct lm_conn_event *e)
{
	return e->uid ? e->uid : (1ULL << 63) | e->cgroup_id;
}

/* An entry of `owner`'s left the table whose shares `shares` counts. */
static __always_inline void share_release(void *shares, __u64 owner)
{
	__u32 *n = bpf_map_lookup_elem(shares, &owner);

	if (n && *n > 0)
		__sync_fetch_and_add(n, -1);
}

/* Take one of `owner`'s places (at most `share`); false when its share is used up. */
static __always_inline bool share_take(void *shares, __u64 owner, __u32 share)
{
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(shares, &owner);

	if (!n) {
		bpf_map_update_elem(shares, &owner, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(shares, &owner);
		if (!n)
			return false;
	}
	if (*n >= share)
		return false;
	__sync_fetch_and_add(n, 1);
	return true;
}

/* What a new flow entry starts from: zero, read-only (no scratch another program on this CPU could overwrite). */
static const struct lm_flow_stats lm_flow_zero SEC(".rodata.flows");

/*
 * A new entry for `k` in `flows`, from the record that opens it; NULL if there is
 * none (the table is full). Another CPU may make the same entry first: then it is
 * that one, and the first record's words are whichever was written last.
 */
static __always_inline struct lm_flow_stats *flow_insert(void *flows, const struct lm_flow_key *k,
							 const struct lm_conn_event *e)
{
	struct lm_flow_stats *v;

	if (bpf_map_update_elem(flows, k, &lm_flow_zero, BPF_NOEXIST) != 0)
		return 0; /* full, or made by another CPU first (found by the caller's next lookup) */
	v = bpf_map_lookup_elem(flows, k);
	if (!v)
		return 0;
	v->first_ns = e->ts_ns;
	v->ppid = e->ppid;
	v->gid = e->gid;
	v->mntns = e->mntns;
	__builtin_memcpy(v->comm, e->comm, sizeof(v->comm));
	return v;
}

/* What the sequence counters hold beyond payload: the SYN of a connection opened here, and FINs. */
static __always_inline __u64 payload(__u64 counted, __u64 beyond)
{
	return counted > beyond ? counted - beyond : 0;
}

/*
 * Count a connection record into its flow in the table lm_flow_gen names (`why`:
 * 0, or LM_FLOW_OVERFLOW). An owner whose share is used up, or a full table, has
 * the record counted in the owner's fold. False when not even that has room.
 */
static __always_inline bool count_flow(const struct lm_conn_event *e, __u8 why)
{
	__u32 zero = 0;
	__u32 *gen = bpf_map_lookup_elem(&lm_flow_gen, &zero);

	if (!gen)
		return false;
	void *flows = (*gen & 1) ? (void *)&lm_flows_1 : (void *)&lm_flows_0;
	void *shares = (*gen & 1) ? (void *)&lm_flows_share_1 : (void *)&lm_flows_share_0;
	bool inbound = e->flags & LM_FLAG_INBOUND;
	struct lm_flow_key k;

	__builtin_memset(&k, 0, sizeof(k));
	k.cgroup_key = e->cgroup_key;
	k.proc_start_ns = e->proc_start_ns;
	k.netns_cookie = e->netns_cookie;
	k.cgroup_id = e->cgroup_id;
	k.cgroup_hierarchy = e->cgroup_hierarchy;
	k.pid = e->pid;
	k.uid = e->uid;
	k.netns = e->netns;
	__builtin_memcpy(k.addr, e->daddr, sizeof(k.addr));
	k.port = inbound ? e->sport : e->dport;
	k.family = e->family;
	k.flags = (inbound ? LM_FLOW_INBOUND : 0) | why;
	if (e->flags & LM_FLAG_EXISTING) {
		k.flags |= LM_FLOW_EXISTING;
		k.lport = e->sport;
	}

	struct lm_flow_stats *s = bpf_map_lookup_elem(flows, &k);

	if (!s) {
		__u64 owner = stash_owner(e);

		if (share_take(shares, owner, LM_FLOWS_SHARE)) {
			s = flow_insert(flows, &k, e);
			if (!s) {
				share_release(shares, owner); /* full, or another CPU made it first */
				s = bpf_map_lookup_elem(flows, &k);
			}
		}
	}
	if (!s) {
		/* The fold: the owner (uid, and root's cgroup), direction and why; no remote end, no process. */
		__builtin_memset(k.addr, 0, sizeof(k.addr));
		k.port = 0;
		k.lport = 0;
		k.pid = 0;
		k.proc_start_ns = 0;
		k.netns_cookie = 0;
		k.netns = 0;
		k.family = 0;
		k.cgroup_key = 0;
		k.cgroup_hierarchy = 0;
		if (e->uid)
			k.cgroup_id = 0;
		k.flags = (k.flags & (LM_FLOW_INBOUND | LM_FLOW_OVERFLOW)) | LM_FLOW_FOLDED;
		s = bpf_map_lookup_elem(flows, &k);
		if (!s)
			s = flow_insert(flows, &k, e);
		if (!s)
			s = bpf_map_lookup_elem(flows, &k); /* another CPU's, made meanwhile */
		if (!s)
			return false;
		count(LM_CTR_FOLDED);
	}
	s->last_ns = e->ts_ns;
	if (e->kind == LM_KIND_CLOSE) {
		__u64 syn = (e->flags & (LM_FLAG_INBOUND | LM_FLAG_EXISTING)) ? 0 : 1;
		__u64 took = e->ts_ns - e->start_ns;

		__sync_fetch_and_add(&s->closes, 1);
		__sync_fetch_and_add(&s->bytes_sent,
				     payload(e->bytes_sent, syn + ((e->flags & LM_FLAG_FIN_ACKED) ? 1 : 0)));
		__sync_fetch_and_add(&s->bytes_received,
				     payload(e->bytes_received, (e->flags & LM_FLAG_FIN_RECEIVED) ? 1 : 0));
		if (took > s->longest_ns) /* racing closes may keep the shorter: a bound, not a count */
			s->longest_ns = took;
		return true;
	}
	/* An outcome after its pending record counted its connection already. */
	if (e->status == LM_STATUS_PENDING || !(e->flags & LM_FLAG_PENDING_SENT))
		__sync_fetch_and_add(&s->connections, 1);
	__sync_fetch_and_add(&s->statuses[e->status & (LM_FLOW_STATUSES - 1)], 1);
	return true;
}

/* How a connection record goes out (emit_conn). */
enum lm_send {
	LM_SEND_OPENING, /* a new connection's: to its flow while the ring is busy */
	LM_SEND_NAMES,	 /* a connect sent only for its name: while the ring is busy, not at all */
	LM_SEND_CLOSE,	 /* the close of one reported one by one: to the ring unless it is full */
	LM_SEND_FLOW,	 /* the close of one whose opening went to its flow: there too */
};

/*
 * Send a connection record, or count it into its flow: every record with --flows;
 * otherwise a new connection's when the ring holds more than lm_config.overflow_at
 * unread (user space is behind: what room is left goes to the closes of connections
 * already reported, and to process records), and any record the ring has no room
 * for. Returns whether it went to a flow. Only a record its flow has no room for
 * either is lost: LM_CTR_LOST (`ring-full`), or with --flows LM_CTR_FLOWS_FULL.
 */
static __always_inline bool emit_conn(struct lm_conn_event *e, enum lm_send how)
{
	if (lm_cfg.flows) {
		if (!count_flow(e, 0))
			count(LM_CTR_FLOWS_FULL);
		return true;
	}
	bool busy = (how == LM_SEND_OPENING || how == LM_SEND_NAMES) && lm_cfg.overflow_at &&
		    bpf_ringbuf_query(&lm_events, BPF_RB_AVAIL_DATA) > lm_cfg.overflow_at;

	if (how != LM_SEND_FLOW && !busy && !bpf_ringbuf_output(&lm_events, e, sizeof(*e), 0))
		return false;
	if (how == LM_SEND_NAMES) {
		/* Nobody asked for it: its close goes out without its connect's name, as user space would have it. */
		count(LM_CTR_FILTERED);
		return false;
	}
	if (lm_cfg.overflow_at && count_flow(e, LM_FLOW_OVERFLOW)) {
		count(LM_CTR_AS_FLOWS);
		return true;
	}
	count(LM_CTR_LOST); /* no room in the ring, nor in the flow table */
	return false;
}

/*
 * Output a connection's opening record (`kind`: LM_OPEN_CONNECTS for a connect's
 * outcome or pending, LM_OPEN_ACCEPTS for an accept), unless user space needs no
 * such records (--events close without accepts): the opening still feeds lm_conns,
 * its close carries the opening's task, and it counts as filtered here, as user
 * space would have filtered it. Connects sent only for their names are not counted
 * into flows: the ring busy, they are not sent (user space filters them anyway).
 * Returns whether it was counted into its flow.
 */
static __always_inline bool emit_opening(struct lm_conn_event *e, __u32 kind)
{
	if (!(lm_cfg.openings & kind)) {
		count(LM_CTR_FILTERED);
		return false;
	}
	if (kind == LM_OPEN_CONNECTS && (lm_cfg.openings & LM_OPEN_NAMES_ONLY))
		return emit_conn(e, LM_SEND_NAMES);
	/* A connection counted into its flow at its pending is not also reported one by one at its outcome. */
	return emit_conn(e, (e->flags & LM_FLAG_PENDING_FLOW) ? LM_SEND_FLOW : LM_SEND_OPENING);
}

static __always_inline bool read_endpoints(const struct sock *sk, struct lm_conn_event *e, bool btf);

/* Connect in process context: record who is connecting. */
static __always_inline void stash_connect(const struct sock *sk, bool btf)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	__u32 zero = 0;

	if (pid == lm_cfg.self_pid)
		return;
	if (LM_FIELD(btf, sk, sk_protocol) != IPPROTO_TCP)
		return;
	__u16 family = LM_FIELD(btf, sk, __sk_common.skc_family);

	if (family != AF_INET && family != AF_INET6)
		return;
	/* connect() sets the destination before the socket enters SYN_SENT. */
	if (dropped_at_connect(sk, btf)) {
		count(LM_CTR_FILTERED);
		return;
	}

	struct lm_conn_event *e = bpf_map_lookup_elem(&lm_conn_scratch, &zero);

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));

	e->kind = LM_KIND_CONNECT;
	e->start_ns = bpf_ktime_get_boot_ns();
	e->family = family;
	fill_task(e, id);

	__u64 key = (__u64)sk;
	__u64 owner = stash_owner(e);
	struct lm_conn_event *old = bpf_map_lookup_elem(&lm_stash, &key);

	if (old) /* a socket reused at the same address: its entry is replaced */
		share_release(&lm_stash_share, stash_owner(old));
	if (share_take(&lm_stash_share, owner, LM_STASH_SHARE)) {
		if (!bpf_map_update_elem(&lm_stash, &key, e, BPF_ANY))
			return;
		share_release(&lm_stash_share, owner);
	}
	if (old) /* not replaced: its outcome must not be taken for this connect's */
		bpf_map_delete_elem(&lm_stash, &key);
	/*
	 * No room for this owner (its share is used up, or the stash is full): report
	 * the attempt now, with what is known at connect() (the source port may not be
	 * bound yet), rather than not at all. Its outcome will not be reported.
	 */
	e->status = LM_STATUS_PENDING;
	e->flags = LM_FLAG_PENDING_SENT | LM_FLAG_UNSTASHED;
	e->ts_ns = e->start_ns;
	count(LM_CTR_UNSTASHED);
	if (read_endpoints(sk, e, btf) && ports_included(e->sport, e->dport))
		emit_opening(e, LM_OPEN_CONNECTS);
	else
		count(LM_CTR_FILTERED);
}

/* The socket's network namespace's inode number. */
static __always_inline __u32 sock_netns(const struct sock *sk, bool btf)
{
	const struct net *net = LM_FIELD(btf, sk, __sk_common.skc_net.net);

	return LM_FIELD(btf, net, ns.inum);
}

/* The socket's network namespace as bpf_get_netns_cookie() names it (the DNS program's key). */
static __always_inline __u64 netns_cookie(const struct sock *sk, bool btf)
{
	struct net *net = LM_FIELD(btf, sk, __sk_common.skc_net.net);

	if (bpf_core_field_exists(net->net_cookie))
		return LM_FIELD(btf, net, net_cookie);
	struct net___atomic_cookie *old = (void *)net;

	if (bpf_core_field_exists(old->net_cookie))
		return LM_FIELD(btf, old, net_cookie.counter);
	return 0;
}

/* Fill addresses, ports and the netns from the socket. Returns false to drop it. */
static __always_inline bool read_endpoints(const struct sock *sk, struct lm_conn_event *e, bool btf)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	e->family = LM_FIELD(btf, sk, __sk_common.skc_family);
	e->sport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	e->dport = bpf_ntohs(LM_FIELD(btf, sk, __sk_common.skc_dport));
	e->netns = sock_netns(sk, btf);
	e->netns_cookie = netns_cookie(sk, btf);
	if (e->family == AF_INET) {
		__be32 s = LM_FIELD(btf, sk, __sk_common.skc_rcv_saddr);
		__be32 d = LM_FIELD(btf, sk, __sk_common.skc_daddr);

		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
		return true;
	}
	/* Arrays need bpf_core_read with their full size: BPF_CORE_READ_INTO on an
	 * array copies a single element. */
	if (btf) {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_v6_rcv_saddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_v6_daddr, sizeof(e->daddr));
	} else {
		bpf_core_read(e->saddr, sizeof(e->saddr), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->daddr, sizeof(e->daddr), &sk->__sk_common.skc_v6_daddr);
	}
	if (lm_cfg.ipv4_only && !is_v4_mapped(e->daddr))
		return false;
	return true;
}

static __always_inline __u8 status_of(int newstate, int err)
{
	if (newstate == TCP_ESTABLISHED)
		return LM_STATUS_ESTABLISHED;
	switch (err) {
	case 0:
		return LM_STATUS_ABORTED;
	case ECONNREFUSED:
		return LM_STATUS_REFUSED;
	case ECONNRESET:
		return LM_STATUS_RESET;
	case ETIMEDOUT:
		return LM_STATUS_TIMEOUT;
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ENETDOWN:
		return LM_STATUS_UNREACHABLE;
	default:
		return LM_STATUS_ERROR;
	}
}

/* A new connection id: the CPU's own sequence number, and the CPU. */
static __always_inline __u64 next_conn_id(void)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&lm_conn_seq, &zero);

	if (!seq)
		return 0;
	*seq += 1;
	return (*seq << 12) | (bpf_get_smp_processor_id() & 0xfff);
}

/* The task half of an opening record, kept with its connection. */
static __always_inline void task_of(struct lm_conn_task *t, const struct lm_conn_event *e)
{
	t->proc_start_ns = e->proc_start_ns;
	t->cgroup_id = e->cgroup_id;
	t->pid = e->pid;
	t->tid = e->tid;
	t->ppid = e->ppid;
	t->uid = e->uid;
	t->gid = e->gid;
	t->mntns = e->mntns;
	__builtin_memcpy(t->comm, e->comm, sizeof(t->comm));
	t->cgroup_key = e->cgroup_key;
	t->cgroup_hierarchy = e->cgroup_hierarchy;
}

/* ... and back into the close record. */
static __always_inline void task_to(struct lm_conn_event *e, const struct lm_conn_task *t)
{
	e->proc_start_ns = t->proc_start_ns;
	e->cgroup_id = t->cgroup_id;
	e->pid = t->pid;
	e->tid = t->tid;
	e->ppid = t->ppid;
	e->uid = t->uid;
	e->gid = t->gid;
	e->mntns = t->mntns;
	__builtin_memcpy(e->comm, t->comm, sizeof(e->comm));
	e->cgroup_key = t->cgroup_key;
	e->cgroup_hierarchy = t->cgroup_hierarchy;
}

/*
 * Whose share of lm_conns a connection takes. An outbound one's: its socket's uid,
 * root's by network namespace (one container's root cannot take the host's). An
 * inbound one's: the port it was accepted on, in its namespace, for its peers
 * choose to make it (a peer flooding one server costs that server's close records,
 * not everyone's).
 */
static __always_inline __u64 conn_owner(const struct sock *sk, __u32 flags, bool btf)
{
	__u64 netns = sock_netns(sk, btf);
	__u32 uid;

	if (flags & LM_CONN_INBOUND)
		return (1ULL << 62) | (netns << 16) | bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	uid = LM_FIELD(btf, sk, sk_uid.val);
	return uid ? uid : (1ULL << 63) | netns;
}

/* A fresh state in the CPU's scratch (the accept path's stand-in for a connection it cannot track). */
static __always_inline struct lm_conn_state *new_state(__u32 flags, __u64 now, const struct lm_conn_event *who)
{
	__u32 zero = 0;
	struct lm_conn_state *st = bpf_map_lookup_elem(&lm_state_scratch, &zero);

	if (!st)
		return 0;
	__builtin_memset(st, 0, sizeof(*st));
	st->id = next_conn_id();
	st->start_ns = now;
	st->flags = flags;
	if (who) {
		task_of(&st->task, who);
		st->latency_us = (now - who->start_ns) / 1000; /* the snapshot's: 0 */
	}
	return st;
}

/*
 * Track an established connection from `now`, opened by `who` (NULL: not known
 * yet, an inbound one's until accept). A handshake that just completed replaces
 * whatever entry the socket's address had (a stale one: see track_state); the
 * snapshot and a late accept (`fresh` false) keep an entry that exists.
 */
static __always_inline struct lm_conn_state *track(const struct sock *sk, __u32 flags, __u64 now, bool fresh,
						   const struct lm_conn_event *who, bool btf)
{
	__u64 key = (__u64)sk;
	struct lm_conn_state *v = bpf_map_lookup_elem(&lm_conns, &key);
	struct lm_conn_state *st;

	if (v && !fresh)
		return v; /* tracked already: the snapshot or a late accept keeps it */
	st = new_state(flags, now, who);
	if (!st)
		return 0;
	if (v) /* a stale entry at a reused address: replaced */
		share_release(&lm_conns_share, v->owner);
	st->owner = conn_owner(sk, flags, btf);
	if (!share_take(&lm_conns_share, st->owner, LM_CONNS_SHARE)) {
		if (v)
			bpf_map_delete_elem(&lm_conns, &key);
		count(LM_CTR_CONNS_FULL);
		return 0;
	}
	bpf_map_update_elem(&lm_conns, &key, st, BPF_ANY);
	v = bpf_map_lookup_elem(&lm_conns, &key);
	if (!v) {
		share_release(&lm_conns_share, st->owner);
		count(LM_CTR_CONNS_FULL);
	}
	return v;
}

/* Stop tracking a connection: its entry and its owner's place. */
static __always_inline void untrack(__u64 key)
{
	struct lm_conn_state *v = bpf_map_lookup_elem(&lm_conns, &key);

	if (!v)
		return;
	share_release(&lm_conns_share, v->owner);
	bpf_map_delete_elem(&lm_conns, &key);
}

static __always_inline bool tcp_inet(const struct sock *sk, bool btf)
{
	__u16 family;

	if (LM_FIELD(btf, sk, sk_protocol) != IPPROTO_TCP)
		return false;
	family = LM_FIELD(btf, sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6;
}

/* The close record: the connection's counters; user space joins the identity. */
static __always_inline void emit_close(const struct sock *sk, const struct lm_conn_state *st, bool btf)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u32 zero = 0;
	struct lm_conn_event *e = bpf_map_lookup_elem(&lm_close_scratch, &zero);

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = LM_KIND_CLOSE;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->start_ns = st->start_ns;
	task_to(e, &st->task);
	e->conn_id = st->id;
	e->latency_us = st->latency_us;
	e->status = LM_STATUS_CLOSED;
	e->flags = ((st->flags & LM_CONN_INBOUND) ? LM_FLAG_INBOUND : 0) |
		   ((st->flags & LM_CONN_EXISTING) ? LM_FLAG_EXISTING : 0);
	/* The counters count sequence space: a FIN each way (and an active opener's
	 * SYN) too. write_seq includes a queued FIN: all of it acknowledged means ours
	 * was. User space subtracts what these flags say, for payload bytes. */
	if ((st->flags & LM_CONN_FIN_SENT) && BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
		e->flags |= LM_FLAG_FIN_ACKED;
	if (LM_FIELD(btf, sk, __sk_common.skc_flags) & (1UL << SOCK_DONE))
		e->flags |= LM_FLAG_FIN_RECEIVED;
	e->sk_err = LM_FIELD(btf, sk, sk_err);
	if (st->flags & LM_CONN_LOCAL_FIN)
		e->closed_by = LM_CLOSED_LOCAL;
	else if (st->flags & LM_CONN_REMOTE_FIN)
		e->closed_by = LM_CLOSED_REMOTE;
	else if (e->sk_err == ECONNRESET || e->sk_err == EPIPE)
		e->closed_by = LM_CLOSED_RESET;
	else
		e->closed_by = LM_CLOSED_LOCAL; /* an abort: close() with unread data, SO_LINGER 0 */
	e->bytes_sent = BPF_CORE_READ(tp, bytes_acked);
	e->bytes_received = BPF_CORE_READ(tp, bytes_received);
	e->retransmits = BPF_CORE_READ(tp, total_retrans);
	e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	if (read_endpoints(sk, e, btf))
		emit_conn(e, (st->flags & LM_CONN_AS_FLOW) ? LM_SEND_FLOW : LM_SEND_CLOSE);
	else
		count(LM_CTR_FILTERED); /* -v6=false: as its accept was */
}

/* Transitions of an established (or handshaking inbound) connection. */
static __always_inline void track_state(const struct sock *sk, int oldstate, int newstate, bool btf)
{
	__u64 key = (__u64)sk;

	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		/* Reported once a process accepts it (handle_accept). */
		if (tcp_inet(sk, btf) && sock_included(sk, btf))
			track(sk, LM_CONN_INBOUND, bpf_ktime_get_boot_ns(), true, 0, btf);
		return;
	}
	struct lm_conn_state *st = bpf_map_lookup_elem(&lm_conns, &key);

	if (!st)
		return;
	if (oldstate == TCP_ESTABLISHED && !(st->flags & (LM_CONN_LOCAL_FIN | LM_CONN_REMOTE_FIN))) {
		if (newstate == TCP_FIN_WAIT1)
			st->flags |= LM_CONN_LOCAL_FIN;
		else if (newstate == TCP_CLOSE_WAIT)
			st->flags |= LM_CONN_REMOTE_FIN;
	}
	if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK)
		st->flags |= LM_CONN_FIN_SENT;
	if (newstate != TCP_CLOSE)
		return;
	if (st->flags & (LM_CONN_REPORTED | LM_CONN_EXISTING)) {
		emit_close(sk, st, btf);
		untrack(key);
	} else if (st->flags & LM_CONN_INBOUND) {
		/*
		 * Closed before its accept was reported, or while it is being reported on
		 * another CPU: the close record goes out now, either way (user space waits
		 * for the accept to join it), and the entry stays for the accept to take
		 * its id and remove it. An accept racing this may miss the mark and leave
		 * the entry: a new handshake on the socket's address replaces it, and the
		 * table is bounded. No record is lost either way.
		 */
		emit_close(sk, st, btf);
		st->flags |= LM_CONN_CLOSED;
	} else {
		untrack(key);
	}
}

static __always_inline int handle_set_state(const struct sock *sk, int oldstate, int newstate, bool btf)
{
	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		if (lm_cfg.stash_on_state)
			stash_connect(sk, btf);
		return 0;
	}
	if (lm_cfg.track_conns && oldstate != TCP_SYN_SENT) {
		track_state(sk, oldstate, newstate, btf);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT || (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE))
		return 0;

	__u64 key = (__u64)sk;
	struct lm_conn_event *e = bpf_map_lookup_elem(&lm_stash, &key);

	if (!e) {
		if (LM_FIELD(btf, sk, sk_protocol) != IPPROTO_TCP)
			return 0;
		/* A connect the kernel's filters dropped was counted as filtered already. */
		if (dropped_at_connect(sk, btf))
			return 0;
		count(LM_CTR_STASH_MISS);
		return 0;
	}
	share_release(&lm_stash_share, stash_owner(e));
	/* The error is set before tcp_done() moves the socket to CLOSE. */
	e->sk_err = newstate == TCP_CLOSE ? LM_FIELD(btf, sk, sk_err) : 0;
	e->status = status_of(newstate, e->sk_err);
	e->ts_ns = bpf_ktime_get_boot_ns();
	if (read_endpoints(sk, e, btf) && ports_included(e->sport, e->dport)) {
		struct lm_conn_state *st = 0;

		if (lm_cfg.track_conns && newstate == TCP_ESTABLISHED) {
			st = track(sk, LM_CONN_REPORTED, e->ts_ns, true, e, btf);
			e->conn_id = st ? st->id : 0;
		}
		if (emit_opening(e, LM_OPEN_CONNECTS) && st)
			st->flags |= LM_CONN_AS_FLOW;
	} else {
		count(LM_CTR_FILTERED);
	}
	bpf_map_delete_elem(&lm_stash, &key);
	return 0;
}

static __always_inline int handle_retransmit(const struct sock *sk, int state, bool btf)
{
	if (state != TCP_SYN_SENT)
		return 0;
	__u64 key = (__u64)sk;
	struct lm_conn_event *e = bpf_map_lookup_elem(&lm_stash, &key);

	if (!e || (e->flags & LM_FLAG_PENDING_SENT))
		return 0;
	e->flags |= LM_FLAG_PENDING_SENT;
	e->status = LM_STATUS_PENDING;
	e->ts_ns = bpf_ktime_get_boot_ns();
	if (!read_endpoints(sk, e, btf))
		return 0;
	if (ports_included(e->sport, e->dport)) {
		if (emit_opening(e, LM_OPEN_CONNECTS))
			e->flags |= LM_FLAG_PENDING_FLOW; /* the stashed entry: its outcome follows it there */
	} else {
		count(LM_CTR_FILTERED);
	}
	return 0;
}

/* The state of one working-directory walk, carried between bpf_loop() steps. */
struct cwd_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *root_dentry;
	struct vfsmount *root_mnt;
	struct lm_exec_event *e;
	__u32 used;
};

/*
 * One step of the walk d_path() makes: up one dentry (writing its name), or across
 * a mount point (struct mount contains the vfsmount), stopping at the task's root so
 * a container's path is its own. Returns 1 to stop.
 */
static long cwd_step(__u32 index, struct cwd_walk *w)
{
	/* Locals, not w->...: BPF_CORE_READ would relocate the walk's own fields too. */
	struct lm_exec_event *e = w->e;
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;

	if (dentry == w->root_dentry && vfsmnt == w->root_mnt) {
		e->cwd_flags = LM_CWD_COMPLETE;
		return 1;
	}
	if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
		struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);

		if (parent == mnt) { /* the namespace's root, above the task's root */
			e->cwd_flags = LM_CWD_COMPLETE;
			return 1;
		}
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = parent;
		w->vfsmnt = &parent->mnt;
		return 0;
	}
	__u32 used = w->used;

	if (used >= LM_CWD_DEPTH)
		return 1;
	long n = bpf_probe_read_kernel_str(e->cwd[used], LM_CWD_NAME, BPF_CORE_READ(dentry, d_name.name));

	if (n <= 0 || n == LM_CWD_NAME) /* unreadable, or a name cut short */
		return 1;
	w->used = used + 1;
	e->cwd_len = used + 1;
	w->dentry = BPF_CORE_READ(dentry, d_parent);
	return 0;
}

/*
 * The task's working directory as path components, leaf first. A bpf_loop() walk
 * (Linux 5.17+) is verified once whatever its length; on older kernels the field
 * stays empty and user space falls back to /proc/<pid>/cwd.
 */
static __always_inline void read_cwd(struct task_struct *task, struct lm_exec_event *e)
{
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_loop))
		return;
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct cwd_walk w = {
		.dentry = BPF_CORE_READ(fs, pwd.dentry),
		.vfsmnt = BPF_CORE_READ(fs, pwd.mnt),
		.root_dentry = BPF_CORE_READ(fs, root.dentry),
		.root_mnt = BPF_CORE_READ(fs, root.mnt),
		.e = e,
	};

	w.mnt = (void *)w.vfsmnt - bpf_core_field_offset(struct mount, mnt);
	bpf_loop(2 * LM_CWD_DEPTH, cwd_step, &w, 0);
}

static __always_inline int handle_exec(const char *filename)
{
	__u32 zero = 0;
	struct lm_exec_event *e = bpf_map_lookup_elem(&lm_exec_scratch, &zero);

	if (!e)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	__u64 uidgid = bpf_get_current_uid_gid();

	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = LM_KIND_EXEC;
	e->pid = id >> 32;
	e->proc_start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)uidgid;
	e->gid = uidgid >> 32;
	e->mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);

	e->filename_len = n > 0 ? n : 0;
	e->cwd_len = 0;
	e->cwd_flags = 0;
	if (n > 0 && e->filename[0] != '/')
		read_cwd(task, e);

	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	unsigned long len = end - start;

	if (len > LM_ARGS_LEN)
		len = LM_ARGS_LEN;
	e->args_len = 0;
	if (len > 0 && bpf_probe_read_user(e->args, len & (LM_ARGS_LEN - 1) ?: LM_ARGS_LEN, (void *)start) == 0)
		e->args_len = len;
	emit(e, sizeof(*e), LM_CTR_LOST_PROCESS);
	return 0;
}

static __always_inline int handle_exit(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	/* Only the thread group leader's exit ends the process. */
	if ((__u32)id != id >> 32)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct lm_exit_event e = {
		.ts_ns = bpf_ktime_get_boot_ns(),
		.kind = LM_KIND_EXIT,
		.pid = id >> 32,
		.proc_start_ns = BPF_CORE_READ(task, start_boottime),
	};

	emit(&e, sizeof(e), LM_CTR_LOST_PROCESS);
	return 0;
}

/*
 * accept(2)/accept4(2) returned `ret` in the accepting task: report the connection
 * with that task's identity. The handshake was tracked in softirq (track_state);
 * a connection that completed before lightmon started is tracked from now.
 */
static __always_inline int handle_accept(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0;

	if (!lm_cfg.track_conns || ret < 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);

	if (!fdt || ret >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;

	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[ret]) || !file)
		return 0;
	/* Another thread may have replaced the fd already: check it is a socket. */
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	const struct sock *sk = sock ? BPF_CORE_READ(sock, sk) : 0;

	if (!sk || !tcp_inet(sk, false))
		return 0;
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_boot_ns();

	if ((id >> 32) == lm_cfg.self_pid) { /* lightmon's own (metrics): never reported, nor its close */
		untrack(key);
		return 0;
	}
	if (!sock_included(sk, false)) { /* neither its accept nor its close: -include keeps other ports */
		count(LM_CTR_FILTERED);
		return 0;
	}
	struct lm_conn_state *st = bpf_map_lookup_elem(&lm_conns, &key);

	/* Established before lightmon started: tracked from now. One that was also
	 * reset while it waited in the queue is closed already: its close record
	 * follows the accept record at once (tracked, it would never close again). */
	bool closed = !st && BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE;

	if (!st)
		st = closed ? new_state(LM_CONN_INBOUND, now, 0) : track(sk, LM_CONN_INBOUND, now, false, 0, false);
	struct lm_conn_event *e = bpf_map_lookup_elem(&lm_conn_scratch, &zero);

	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = LM_KIND_ACCEPT;
	e->status = LM_STATUS_ESTABLISHED;
	e->ts_ns = now;
	e->start_ns = st ? st->start_ns : now;
	e->conn_id = st ? st->id : 0;
	e->flags = LM_FLAG_INBOUND;
	fill_task(e, id);
	if (!read_endpoints(sk, e, false)) { /* -v6=false: neither the accept nor its close */
		count(LM_CTR_FILTERED);
		untrack(key);
		return 0;
	}
	if (st) {
		st->flags |= LM_CONN_REPORTED;
		task_of(&st->task, e); /* its close names the accepting task */
		st->latency_us = (now - e->start_ns) / 1000; /* as the accept record says it */
	}
	if (emit_opening(e, LM_OPEN_ACCEPTS) && st)
		st->flags |= LM_CONN_AS_FLOW;
	if (closed && st)
		emit_close(sk, st, false);
	else if (st && (st->flags & LM_CONN_CLOSED)) /* its close went out already */
		untrack(key);
	return 0;
}

/* ---- connect-time stash through fentry or kprobe: exact source port at connect ----
 * First in the file: libbpf loads programs in this order, so a kernel that refuses
 * fentry says so before the other programs were verified for nothing. */

/* tcp_connect() runs inside connect(2) for v4 and v6 after the source port is bound
 * and before the SYN is sent, so the stash precedes any outcome even on loopback. */
SEC("fentry/tcp_connect")
int BPF_PROG(lm_fentry_conn, struct sock *sk)
{
	stash_connect(sk, true);
	return 0;
}

SEC("kprobe/tcp_connect")
int BPF_KPROBE(lm_kprobe_conn, struct sock *sk)
{
	stash_connect(sk, false);
	return 0;
}

/*
 * Start-up snapshot: every TCP socket open in any process, for connections that were
 * established before lightmon started. Listening sockets come too, so user space can
 * tell accepted connections (local port is listened on) from outbound ones. Each
 * process is visited once (thread group leaders only: threads share the fd table),
 * and each socket written once, for the first process found holding it.
 */
SEC("iter/task_file")
int lm_iter_tcp(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	__u32 zero = 0;

	if (!task || !file)
		return 0;
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid) || BPF_CORE_READ(task, tgid) == lm_cfg.self_pid)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	const struct sock *sk = sock ? BPF_CORE_READ(sock, sk) : 0;

	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

	if ((family != AF_INET && family != AF_INET6) || (state != TCP_ESTABLISHED && state != TCP_LISTEN))
		return 0;
	__u64 key = (__u64)sk;
	__u8 one = 1;

	if (bpf_map_lookup_elem(&lm_iter_seen, &key))
		return 0; /* written already, for another process that shares it */
	bpf_map_update_elem(&lm_iter_seen, &key, &one, BPF_NOEXIST);
	struct lm_conn_event *e = bpf_map_lookup_elem(&lm_conn_scratch, &zero);

	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = LM_KIND_CONNECT;
	e->status = state == TCP_LISTEN ? LM_STATUS_LISTEN : LM_STATUS_EXISTING;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->start_ns = e->ts_ns;
	e->pid = BPF_CORE_READ(task, tgid);
	e->tid = e->pid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->gid = BPF_CORE_READ(task, cred, gid.val);
	e->proc_start_ns = BPF_CORE_READ(task, start_boottime);
	e->mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	read_cgroup(task, e, false);
	read_endpoints(sk, e, false);
	if (lm_cfg.track_conns && state == TCP_ESTABLISHED && ports_included(e->sport, e->dport)) {
		/* Its close is reported too; a connection a live record already tracks keeps
		 * that record's id, so user space can tell the two apart. */
		struct lm_conn_state *st = track(sk, LM_CONN_EXISTING, e->ts_ns, false, e, false);

		e->conn_id = st ? st->id : 0;
	}
	bpf_seq_write(seq, e, sizeof(*e));
	return 0;
}

/* A forked process inherits its parent's identity until it execs. Threads are not
 * processes: only a child that leads its own thread group is reported. */
static __always_inline int handle_fork(struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	struct lm_fork_event e = {
		.ts_ns = bpf_ktime_get_boot_ns(),
		.kind = LM_KIND_FORK,
		.pid = BPF_CORE_READ(child, tgid),
		.proc_start_ns = BPF_CORE_READ(child, start_boottime),
		.parent_start_ns = BPF_CORE_READ(parent, group_leader, start_boottime),
		.ppid = BPF_CORE_READ(parent, tgid),
	};

	emit(&e, sizeof(e), LM_CTR_LOST_PROCESS);
	return 0;
}

/* ---- tp_btf: BTF-typed raw tracepoints (5.5+), the preferred strategy ---- */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(lm_btf_state, const struct sock *sk, int oldstate, int newstate)
{
	return handle_set_state(sk, oldstate, newstate, true);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(lm_btf_retrans, const struct sock *sk)
{
	return handle_retransmit(sk, sk->__sk_common.skc_state, true);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(lm_btf_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return handle_exec(BPF_CORE_READ(bprm, filename));
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(lm_btf_exit)
{
	return handle_exit();
}

/* The classic tracepoint has no pointer to the child, hence no start time to tell a
 * reused pid apart: fork tracking is a BTF-strategy feature. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(lm_btf_fork, struct task_struct *parent, struct task_struct *child)
{
	return handle_fork(parent, child);
}

/* ---- classic tracepoints through tracefs: the fallback ---- */

SEC("tracepoint/sock/inet_sock_set_state")
int lm_tp_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return handle_set_state(BPF_CORE_READ(ctx, skaddr), BPF_CORE_READ(ctx, oldstate),
				BPF_CORE_READ(ctx, newstate), false);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int lm_tp_retrans(struct lm_tp_retransmit *ctx)
{
	return handle_retransmit(ctx->skaddr, ctx->state, false);
}

SEC("tracepoint/sched/sched_process_exec")
int lm_tp_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	/* __data_loc: the low 16 bits are the offset of the string in the record. */
	unsigned int loc = BPF_CORE_READ(ctx, __data_loc_filename);

	return handle_exec((const char *)ctx + (loc & 0xffff));
}

/* Accepts: syscall tracepoints for every strategy (tracefs; CONFIG_FTRACE_SYSCALLS). */
SEC("tracepoint/syscalls/sys_exit_accept4")
int lm_tp_accept4(struct lm_tp_sys_exit *ctx)
{
	return handle_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int lm_tp_accept(struct lm_tp_sys_exit *ctx)
{
	return handle_accept(ctx->ret);
}

SEC("tracepoint/sched/sched_process_exit")
int lm_tp_exit(void *ctx)
{
	return handle_exit();
}

/* ---- DNS responses: cgroup_skb ingress on the cgroup v2 root, every socket in every netns ---- */

/*
 * Copy the start of every DNS response (source port 53, UDP or TCP, IPv4 or IPv6)
 * that arrives at a socket into the ring, with the socket's netns and cgroup: user
 * space parses it and learns which names that workload resolved to which
 * addresses. Every packet is let through. A DNS flood cannot crowd connection
 * records out: responses are not copied while the ring is half full (counted).
 */
/* A packet's IP version, protocol, where its UDP or TCP header starts, and its ports
 * (network order). IPv6 extension headers are not followed. */
struct l4_info {
	__u32 l4;
	__be32 daddr4; /* IPv4: the destination (Docker's resolver is told by it) */
	__u8 version;
	__u8 proto;
	__be16 ports[2];
};

/*
 * The packet's IP version, protocol and ports from its linear head, read in place
 * (cgroup_skb programs may read packet data directly): no helper call for the many
 * packets that are not DNS. 0: read; 1: not UDP or TCP over IP; -1: the head is too
 * short to tell (a non-linear packet, IPv4 options), for parse_l4's helper reads.
 */
static __always_inline int peek_l4(struct __sk_buff *skb, struct l4_info *p)
{
	const __u8 *data = (const __u8 *)(long)skb->data;
	const __u8 *end = (const __u8 *)(long)skb->data_end;

	if (data + 1 > end)
		return -1;
	p->version = data[0] >> 4;
	if (p->version == 4) {
		/* The header without options and the ports: 24 bytes (a bare RST is 40). */
		if ((data[0] & 0xf) != 5 || data + 20 + sizeof(p->ports) > end)
			return -1;
		p->l4 = 20;
		p->proto = data[9];
		__builtin_memcpy(&p->daddr4, data + 16, 4);
		__builtin_memcpy(p->ports, data + 20, sizeof(p->ports));
	} else if (p->version == 6) {
		if (data + 40 + sizeof(p->ports) > end)
			return -1;
		p->l4 = 40;
		p->proto = data[6];
		__builtin_memcpy(p->ports, data + 40, sizeof(p->ports));
	} else {
		return 1;
	}
	return p->proto == IPPROTO_UDP || p->proto == IPPROTO_TCP ? 0 : 1;
}

static __always_inline bool parse_l4(struct __sk_buff *skb, struct l4_info *p)
{
	__u8 b0;
	int peeked = peek_l4(skb, p);

	if (peeked >= 0)
		return peeked == 0;
	if (bpf_skb_load_bytes(skb, 0, &b0, 1))
		return false;
	p->version = b0 >> 4;
	if (p->version == 4) {
		p->l4 = (b0 & 0xf) * 4;
		if (bpf_skb_load_bytes(skb, 9, &p->proto, 1) || bpf_skb_load_bytes(skb, 16, &p->daddr4, 4))
			return false;
	} else if (p->version == 6) {
		p->l4 = 40;
		if (bpf_skb_load_bytes(skb, 6, &p->proto, 1))
			return false;
	} else {
		return false;
	}
	return (p->proto == IPPROTO_UDP || p->proto == IPPROTO_TCP) &&
	       !bpf_skb_load_bytes(skb, p->l4, p->ports, sizeof(p->ports));
}

/* Where the UDP or TCP payload starts: asked only of packets that may be DNS. */
static __always_inline bool l4_payload(struct __sk_buff *skb, const struct l4_info *p, __u32 *off)
{
	__u8 doff;

	if (p->proto == IPPROTO_UDP) {
		*off = p->l4 + 8;
		return true;
	}
	if (bpf_skb_load_bytes(skb, p->l4 + 12, &doff, 1))
		return false;
	*off = p->l4 + (doff >> 4) * 4;
	return true;
}

static __always_inline int handle_dns(struct __sk_buff *skb, bool by_netns)
{
	__u32 zero = 0, off, len = skb->len;
	struct l4_info p;

	if (!parse_l4(skb, &p) || p.ports[0] != bpf_htons(53) || !l4_payload(skb, &p, &off))
		return 1;
	if (len <= off) /* no payload: a bare ACK */
		return 1;
	if (bpf_ringbuf_query(&lm_events, BPF_RB_AVAIL_DATA) > bpf_ringbuf_query(&lm_events, BPF_RB_RING_SIZE) / 2) {
		count(LM_CTR_DNS_LOST);
		return 1;
	}
	struct lm_dns_event *e = bpf_map_lookup_elem(&lm_dns_scratch, &zero);

	if (!e)
		return 1;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = LM_KIND_DNS;
	e->netns_cookie = by_netns ? bpf_get_netns_cookie(skb) : 0;
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->payload_len = len - off;
	e->dport = bpf_ntohs(p.ports[1]);
	e->proto = p.proto;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (p.version == 4) {
		e->family = AF_INET;
		bpf_skb_load_bytes(skb, 12, e->saddr, 4);
		bpf_skb_load_bytes(skb, 16, e->daddr, 4);
	} else {
		e->family = AF_INET6;
		bpf_skb_load_bytes(skb, 8, e->saddr, 16);
		bpf_skb_load_bytes(skb, 24, e->daddr, 16);
	}
	__u32 n = len - off; /* > 0: len > off above */

	/* The same n, restated in [1, LM_DNS_DATA] for verifiers old and new (LM_DNS_DATA
	 * is a power of two); the empty asm keeps the compiler from dropping it. */
	if (n > LM_DNS_DATA - 1)
		n = LM_DNS_DATA - 1;
	asm volatile("" : "+r"(n));
	n = ((n - 1) & (LM_DNS_DATA - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, e->data, n))
		return 1;
	e->len = n;
	if (bpf_ringbuf_output(&lm_events, e, sizeof(*e), 0))
		count(LM_CTR_DNS_LOST);
	return 1;
}

SEC("cgroup_skb/ingress")
int lm_dns_in(struct __sk_buff *skb)
{
	return handle_dns(skb, true);
}

/* Kernels whose cgroup_skb programs lack bpf_get_netns_cookie() (before 6.6 or so):
 * names are then learned per host, not per network namespace. */
SEC("cgroup_skb/ingress")
int lm_dns_in_host(struct __sk_buff *skb)
{
	return handle_dns(skb, false);
}

/* Docker's embedded resolver, 127.0.0.11: its DNAT (in the container's OUTPUT chain)
 * moves port 53 to a random one before cgroup egress programs run. */
#define DOCKER_DNS_V4 0x7f00000b

/*
 * DNS queries leaving a socket (destination port 53, or Docker's resolver): a
 * response teaches a name only when it answers one of these, so the question is
 * copied (user space compares it with the response's). Sent from the asking task,
 * they name it.
 */
static __always_inline int handle_dns_query(struct __sk_buff *skb, bool by_netns, bool with_task)
{
	__u32 off, len = skb->len, zero = 0;
	struct l4_info p;
	__be32 daddr4;

	if (!parse_l4(skb, &p))
		return 1;
	daddr4 = p.version == 4 ? p.daddr4 : 0;
	if (p.ports[1] != bpf_htons(53) && daddr4 != bpf_htonl(DOCKER_DNS_V4))
		return 1;
	if (!l4_payload(skb, &p, &off))
		return 1;
	/* TCP data starts with the message's two-byte length. */
	off += p.proto == IPPROTO_TCP ? 2 : 0;
	if (len < off + 12) /* no whole header: a bare ACK, or not DNS */
		return 1;
	if (bpf_ringbuf_query(&lm_events, BPF_RB_AVAIL_DATA) > bpf_ringbuf_query(&lm_events, BPF_RB_RING_SIZE) / 2) {
		count(LM_CTR_DNS_LOST);
		return 1;
	}
	struct lm_dns_query *q = bpf_map_lookup_elem(&lm_query_scratch, &zero);

	if (!q)
		return 1;
	__u64 pt = with_task ? bpf_get_current_pid_tgid() : 0;
	struct task_struct *task = with_task ? (struct task_struct *)bpf_get_current_task() : 0;
	__be16 id = 0;

	bpf_skb_load_bytes(skb, off, &id, sizeof(id));
	q->ts_ns = bpf_ktime_get_boot_ns();
	q->kind = LM_KIND_DNS_QUERY;
	q->pid = pt >> 32;
	q->tid = (__u32)pt;
	q->uid = with_task ? (__u32)bpf_get_current_uid_gid() : 0;
	q->netns_cookie = by_netns ? bpf_get_netns_cookie(skb) : 0;
	q->cgroup_id = with_task ? bpf_get_current_cgroup_id() : bpf_skb_cgroup_id(skb);
	q->proc_start_ns = with_task && q->pid ? BPF_CORE_READ(task, group_leader, start_boottime) : 0;
	q->sport = bpf_ntohs(p.ports[0]);
	q->dns_id = bpf_ntohs(id);
	__builtin_memset(q->comm, 0, sizeof(q->comm));
	__builtin_memset(q->cgroup, 0, sizeof(q->cgroup));
	__builtin_memset(q->cgroup_parent, 0, sizeof(q->cgroup_parent));
	__builtin_memset(q->daddr, 0, sizeof(q->daddr));
	if (p.version == 4) {
		q->family = AF_INET;
		__builtin_memcpy(q->daddr, &daddr4, 4);
	} else {
		q->family = AF_INET6;
		bpf_skb_load_bytes(skb, 24, q->daddr, 16);
	}
	if (with_task && q->pid) {
		bpf_get_current_comm(q->comm, sizeof(q->comm));
		/* The container: the task's cgroup names, as lm_cgroups has them for connection records. */
		read_cgroup_names(task, q->cgroup, q->cgroup_parent);
	}
	__u32 n = len - off; /* >= 12: checked above */

	/* Restated in [1, LM_DNS_QUERY_DATA - 1] for the verifier, as in handle_dns. */
	if (n > LM_DNS_QUERY_DATA - 1)
		n = LM_DNS_QUERY_DATA - 1;
	asm volatile("" : "+r"(n));
	n = ((n - 1) & (LM_DNS_QUERY_DATA - 1)) + 1;
	q->len = 0;
	if (bpf_skb_load_bytes(skb, off, q->data, n) == 0)
		q->len = n;
	if (bpf_ringbuf_output(&lm_events, q, sizeof(*q), 0))
		count(LM_CTR_DNS_LOST);
	return 1;
}

SEC("cgroup_skb/egress")
int lm_dns_out(struct __sk_buff *skb)
{
	return handle_dns_query(skb, true, true);
}

/* Kernels without bpf_get_netns_cookie() for cgroup_skb: queries per host, as responses. */
SEC("cgroup_skb/egress")
int lm_dns_out_host(struct __sk_buff *skb)
{
	return handle_dns_query(skb, false, true);
}

/* Kernels whose cgroup_skb programs may not ask who the current task is (Debian 12's
 * 6.1): queries without their sender (pid 0, uid 0), enough to match responses. */
SEC("cgroup_skb/egress")
int lm_dns_out_bare(struct __sk_buff *skb)
{
	return handle_dns_query(skb, false, false);
}
