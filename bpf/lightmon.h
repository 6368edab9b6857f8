/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The contract between the BPF programs and user space.
 *
 * Every struct here is decoded by src/capture/layout.ts. tests/layout_test.ts reads
 * the compiled object's BTF and checks every offset and size the decoder uses, and
 * the _Static_asserts below break the build before a layout change can reach the
 * decoder. Fields are ordered widest first; padding is explicit.
 *
 * Byte order: addresses are in network order, ports in host order.
 * Clock: every *_ns timestamp is CLOCK_BOOTTIME (bpf_ktime_get_boot_ns).
 */
#ifndef LIGHTMON_H
#define LIGHTMON_H

#define LM_COMM_LEN 16
#define LM_CGROUP_NAME_LEN 96
#define LM_FILENAME_LEN 256
#define LM_ARGS_LEN 512
#define LM_CWD_DEPTH 16 /* directory levels the walk reads */
#define LM_CWD_NAME 48	/* longest directory name it reads, NUL included */
#define LM_STASH_ENTRIES 65536 /* handshakes in flight lm_stash holds */
#define LM_CONNS_ENTRIES 262144 /* connections lm_conns tracks */
#define LM_CGROUP_DEPTH 32     /* cgroup levels checked for root's ownership; deeper is not believed */
#define LM_CGROUPS_ENTRIES 16384 /* cgroups whose names lm_cgroups keeps */
#define LM_FLOWS_ENTRIES 65536 /* flows each of the two lm_flows_* tables holds */
#define LM_FLOW_STATUSES 16	/* lm_flow_stats.statuses: by enum lm_status */

/* The first 16 bytes of every ring buffer record. */
enum lm_kind {
	LM_KIND_CONNECT = 1,
	LM_KIND_EXEC = 2,
	LM_KIND_EXIT = 3,
	LM_KIND_FORK = 4,
	LM_KIND_ACCEPT = 5, /* lm_conn_event: a connection accepted, in the accepting task */
	LM_KIND_CLOSE = 6,  /* lm_conn_event: a connection ended; identity is joined by conn_id */
	LM_KIND_DNS = 7,    /* lm_dns_event: a DNS response arriving at a socket */
	LM_KIND_DNS_QUERY = 8, /* lm_dns_query: a DNS query leaving, in the sending task */
};

/* lm_conn_event.status */
enum lm_status {
	LM_STATUS_ESTABLISHED = 1,
	LM_STATUS_REFUSED = 2,	  /* RST in SYN_SENT (sk_err ECONNREFUSED) */
	LM_STATUS_RESET = 3,	  /* ECONNRESET */
	LM_STATUS_TIMEOUT = 4,	  /* SYN retries exhausted (ETIMEDOUT) */
	LM_STATUS_UNREACHABLE = 5, /* ICMP error: EHOSTUNREACH, ENETUNREACH, ... */
	LM_STATUS_PENDING = 6,	  /* first SYN retransmit: the handshake hangs */
	LM_STATUS_ABORTED = 7,	  /* closed by the process before an outcome */
	LM_STATUS_ERROR = 8,	  /* any other sk_err, see lm_conn_event.sk_err */
	LM_STATUS_EXISTING = 9,	  /* established before lightmon started (iterator) */
	LM_STATUS_LISTEN = 10,	  /* a listening socket (iterator; tells inbound from outbound) */
	LM_STATUS_CLOSED = 11,	  /* a close record */
};

/* lm_conn_event.flags */
#define LM_FLAG_PENDING_SENT 0x1 /* a pending record was already emitted */
#define LM_FLAG_INBOUND 0x2	 /* accepted here (close records) */
#define LM_FLAG_EXISTING 0x4	 /* open before lightmon started (close records) */
#define LM_FLAG_FIN_ACKED 0x8	 /* close: bytes_sent counts our acknowledged FIN */
#define LM_FLAG_FIN_RECEIVED 0x10 /* close: bytes_received counts the peer's FIN */
#define LM_FLAG_UNSTASHED 0x20	 /* reported at connect(): no stash room for its owner, no outcome follows */
#define LM_FLAG_PENDING_FLOW 0x40 /* its pending went to its flow: so do its outcome and its close */

/* lm_conn_event.closed_by */
enum lm_closed_by {
	LM_CLOSED_LOCAL = 1,  /* this side sent the first FIN, or aborted */
	LM_CLOSED_REMOTE = 2, /* the peer sent the first FIN */
	LM_CLOSED_RESET = 3,  /* the peer reset it (RST received, no FIN before) */
};

/* lm_conn_state.flags */
#define LM_CONN_INBOUND 0x1
#define LM_CONN_LOCAL_FIN 0x2	/* ESTABLISHED -> FIN_WAIT1 came first */
#define LM_CONN_REMOTE_FIN 0x4	/* ESTABLISHED -> CLOSE_WAIT came first */
#define LM_CONN_EXISTING 0x8	/* found by the start-up snapshot */
#define LM_CONN_REPORTED 0x10	/* its opening record was emitted: its close will be */
#define LM_CONN_FIN_SENT 0x20	/* this side queued a FIN (FIN_WAIT1 or LAST_ACK) */
#define LM_CONN_CLOSED 0x40	/* inbound, closed before it was accepted: kept for the accept */
#define LM_CONN_AS_FLOW 0x80	/* its opening was counted into a flow (the ring was busy): so is its close */

/*
 * A cgroup as lm_cgroups keys it: its kernfs node in its hierarchy (each cgroup v1
 * hierarchy numbers its nodes apart from the others). Node ids are never reused.
 * A connection record carries the key of the cgroup that names its task; user space
 * reads the names from lm_cgroups once per cgroup, not 192 bytes in every record.
 */
struct lm_cgroup_key {
	__u64 id;	 /* kernfs_node.id; 0: no names (the host's root, or not root's) */
	__u32 hierarchy; /* cgroup_root.hierarchy_id */
	__u32 _pad;
};

/* A cgroup's names, read once when a connection of one of its tasks is first seen. */
struct lm_cgroup_names {
	char cgroup[LM_CGROUP_NAME_LEN];	/* the leaf's name: carries the container id */
	char cgroup_parent[LM_CGROUP_NAME_LEN]; /* its parent's: carries the pod uid */
};

/* Who opened a connection: the task half of its opening record, kept with the
 * connection so that its close record names it, whatever user space remembers. */
struct lm_conn_task {
	__u64 proc_start_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 mntns;
	char comm[LM_COMM_LEN];
	__u64 cgroup_key;
	__u32 cgroup_hierarchy;
	__u32 _pad;
};

/* One established connection, in lm_conns, from the handshake to the close. */
struct lm_conn_state {
	__u64 id;	/* conn_id, unique for the run */
	__u64 start_ns; /* when it reached ESTABLISHED (or was found by the snapshot) */
	__u32 flags;	/* LM_CONN_* */
	__u32 latency_us; /* its opening's latency: connect() to ESTABLISHED, or ESTABLISHED to accept() */
	__u64 owner;	/* whose share of lm_conns it takes (conn_owner) */
	struct lm_conn_task task; /* pid 0 until known: an inbound one's is its accepting task's */
};

/* Counters in the per-CPU array lm_counters, by index. */
enum lm_counter {
	LM_CTR_LOST = 0,	  /* a connection event lost: the ring was full, and its flow had no room either */
	LM_CTR_STASH_MISS = 1,	  /* outcome for a socket with no stash entry (begun before the start, or unstashed) */
	LM_CTR_UNSTASHED = 2,	  /* a connect reported at connect(): its owner's stash share, or the stash, was full */
	LM_CTR_FILTERED = 3,	  /* dropped in the kernel by the loader's config */
	LM_CTR_LOST_PROCESS = 4,  /* an exec/exit/fork record lost: the ring was full */
	LM_CTR_CONNS_FULL = 5,	  /* lm_conns, or its owner's share, full: that connection gets no close record */
	LM_CTR_DNS_LOST = 6,	  /* a DNS response not copied: the ring was full, or half full */
	LM_CTR_CGROUP_FOREIGN = 7, /* cgroup names not reported: the cgroup, or one above it, is not root's */
	LM_CTR_AS_FLOWS = 8,	  /* a connection record counted into its flow: the ring was busy (lm_config.overflow_at) */
	LM_CTR_FLOWS_FULL = 9,	  /* --flows: a connection record not counted: its flow had no room, nor its owner's fold */
	LM_CTR_FOLDED = 10,	  /* a connection record counted into its owner's fold: its share of lm_flows_* was used up */
	LM_CTR_MAX = 11,
};

/* One outbound TCP connection attempt (LM_KIND_CONNECT), accepted connection
 * (LM_KIND_ACCEPT) or ended connection (LM_KIND_CLOSE). saddr/sport are always this
 * host's end, daddr/dport the peer's. A close record carries the task that opened
 * or accepted the connection (pid 0 if it closed before it was accepted); user
 * space also joins it to the opening record by conn_id. */
struct lm_conn_event {
	__u64 ts_ns;	     /* when this record was emitted */
	__u32 kind;	     /* LM_KIND_CONNECT */
	__u32 pid;	     /* tgid of the connecting process */
	__u64 start_ns;	     /* CLOSE->SYN_SENT (connect(2) in process context) */
	__u64 cgroup_id;     /* cgroup v2 id of the connecting task */
	__u64 proc_start_ns; /* group leader's start_boottime (CLOCK_BOOTTIME): pid reuse guard */
	__u32 tid;
	__u32 ppid;	     /* tgid of real_parent */
	__u32 uid;
	__u32 gid;
	__u32 mntns;	     /* mount namespace inum of the connecting task */
	__u32 netns;	     /* network namespace inum of the socket */
	__s32 sk_err;	     /* sk->sk_err at the outcome (positive errno), 0 if none */
	__u16 sport;	     /* host order */
	__u16 dport;	     /* host order */
	__u16 family;	     /* AF_INET or AF_INET6 as the socket has it */
	__u8 status;	     /* enum lm_status */
	__u8 flags;	     /* LM_FLAG_* */
	__u8 saddr[16];	     /* network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];	     /* network order; IPv4 in the first 4 bytes */
	char comm[LM_COMM_LEN];
	__u32 cgroup_hierarchy; /* lm_cgroup_key.hierarchy of the task's naming cgroup */
	__u64 cgroup_key;    /* lm_cgroup_key.id of the task's naming cgroup: its names are in lm_cgroups */
	__u32 retransmits;   /* close: tcp_sock.total_retrans */
	__u32 srtt_us;	     /* close: smoothed RTT, microseconds */
	__u64 conn_id;	     /* lm_conn_state.id; 0 when connections are not tracked */
	__u64 bytes_sent;    /* close: tcp_sock.bytes_acked (SYN and FIN included: see flags) */
	__u64 bytes_received; /* close: tcp_sock.bytes_received (the FIN included: see flags) */
	__u64 netns_cookie;  /* the socket's network namespace, as bpf_get_netns_cookie() names it */
	__u8 closed_by;	     /* close: enum lm_closed_by */
	__u8 _pad[3];
	__u32 latency_us;    /* close: its opening record's latency (lm_conn_state.latency_us) */
};

#define LM_DNS_DATA 1024 /* a power of two; 1023 bytes of a response are copied at most */

/* A DNS response (source port 53, UDP or TCP) arriving at a socket, from the
 * cgroup_skb ingress program on the cgroup v2 root: every socket of every netns. */
struct lm_dns_event {
	__u64 ts_ns;
	__u32 kind;	     /* LM_KIND_DNS */
	__u32 len;	     /* bytes in data */
	__u64 netns_cookie;  /* the receiving socket's network namespace */
	__u64 cgroup_id;     /* the receiving socket's cgroup v2 id */
	__u32 payload_len;   /* the response's bytes in this packet (may exceed len) */
	__u16 family;	     /* AF_INET or AF_INET6 */
	__u16 dport;	     /* the asking socket's port, host order */
	__u8 proto;	     /* IPPROTO_UDP or IPPROTO_TCP (TCP data starts with a 2-byte length) */
	__u8 _pad[7];
	__u8 saddr[16];	     /* the resolver */
	__u8 daddr[16];	     /* the asking socket */
	__u8 data[LM_DNS_DATA];
};

/* A successful execve: the process cache's primary source. */
struct lm_exec_event {
	__u64 ts_ns;
	__u32 kind; /* LM_KIND_EXEC */
	__u32 pid;  /* tgid */
	__u64 proc_start_ns;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 args_len;	    /* bytes used in args */
	__u32 filename_len; /* bytes used in filename, NUL included */
	__u32 mntns;
	__u32 cwd_len;	    /* components in cwd; 0 unless filename is relative */
	__u32 cwd_flags;    /* LM_CWD_* */
	char comm[LM_COMM_LEN];
	char filename[LM_FILENAME_LEN]; /* the path as execve(2) was given it */
	char args[LM_ARGS_LEN];	       /* argv, each argument NUL-terminated */
	/* For a relative filename: the working directory's components, leaf first, one
	 * NUL-terminated name per slot, up to the process's root (user space reverses
	 * them). Fixed slots keep the verifier's walk of the loop small. */
	char cwd[LM_CWD_DEPTH][LM_CWD_NAME];
};

/* lm_exec_event.cwd_flags */
#define LM_CWD_COMPLETE 0x1 /* the walk reached the process's root */

/* A process (thread group leader) exited. */
struct lm_exit_event {
	__u64 ts_ns;
	__u32 kind; /* LM_KIND_EXIT */
	__u32 pid;
	__u64 proc_start_ns;
};

/* A new process (not a thread): it runs its parent's program until it execs. */
struct lm_fork_event {
	__u64 ts_ns;
	__u32 kind; /* LM_KIND_FORK */
	__u32 pid;  /* the child's tgid */
	__u64 proc_start_ns;
	__u64 parent_start_ns;
	__u32 ppid;
	__u32 _pad;
};

#define LM_DNS_QUERY_DATA 512 /* a power of two; a query's first 511 bytes: its header and question */

/* A DNS query (destination port 53, or Docker's resolver at 127.0.0.11) leaving a
 * socket, from the cgroup_skb egress program: sent in the asking task's context, so
 * it names the task. A response is believed only when it answers a query seen
 * leaving the same network namespace: same resolver, asking port, id and question. */
struct lm_dns_query {
	__u64 ts_ns;
	__u32 kind;	     /* LM_KIND_DNS_QUERY */
	__u32 pid;	     /* tgid of the sending task (0: sent outside a task, e.g. a retransmit) */
	__u64 netns_cookie;  /* 0 where cgroup_skb programs cannot tell it (lm_dns_out_host) */
	__u64 cgroup_id;     /* the sending task's cgroup v2 id */
	__u64 proc_start_ns; /* the sending task's group leader's start_boottime: pid reuse guard */
	__u32 tid;
	__u32 uid;
	__u16 sport;	     /* the asking socket's port, host order */
	__u16 dns_id;	     /* the query's id, as on the wire */
	__u16 family;	     /* AF_INET or AF_INET6 */
	__u16 len;	     /* bytes in data */
	char comm[LM_COMM_LEN];
	char cgroup[LM_CGROUP_NAME_LEN];	/* the sending task's cgroup leaf name */
	char cgroup_parent[LM_CGROUP_NAME_LEN]; /* and its parent's */
	__u8 daddr[16];	     /* the resolver, network order */
	__u8 data[LM_DNS_QUERY_DATA]; /* the DNS message from its header (after TCP's length) */
};

/*
 * A flow: who (the task's process and cgroup), in which network namespace, with
 * which remote address, on which port (the peer's for an outbound connection, this
 * host's for an inbound one). Connection records are counted into their flow's
 * lm_flow_stats instead of the ring: all of them with --flows, and, otherwise, those
 * the ring has no room for. Two tables take turns (lm_flow_gen): user space reads and
 * empties the one the programs stopped writing.
 */
struct lm_flow_key {
	__u64 cgroup_key;    /* lm_cgroup_key.id of the task's naming cgroup */
	__u64 proc_start_ns; /* with pid, the process */
	__u64 netns_cookie;  /* the socket's network namespace (the DNS names' key) */
	__u64 cgroup_id;     /* cgroup v2 id */
	__u32 cgroup_hierarchy;
	__u32 pid;	     /* tgid; 0 in a fold, and for an inbound one closed before its accept */
	__u32 uid;
	__u32 netns;	     /* network namespace inum */
	__u8 addr[16];	     /* the peer, network order; zero in a fold */
	__u16 port;	     /* the peer's port (outbound), this host's (inbound); 0 in a fold */
	__u16 lport;	     /* an existing connection's local port (its direction is user space's to tell) */
	__u16 family;	     /* AF_INET or AF_INET6 as the socket has it */
	__u8 flags;	     /* LM_FLOW_* */
	__u8 _pad;
};

/* lm_flow_key.flags */
#define LM_FLOW_INBOUND 0x1  /* accepted here */
#define LM_FLOW_OVERFLOW 0x2 /* counted because the ring was busy: these connections were not reported one by one */
#define LM_FLOW_FOLDED 0x4   /* the owner's share was used up: every remote end of theirs, in one entry */
#define LM_FLOW_EXISTING 0x8 /* closes of connections open before lightmon started */

/* What one interval of a flow counted. */
struct lm_flow_stats {
	__u64 first_ns;	      /* its first record's time */
	__u64 last_ns;	      /* its last record's */
	__u64 connections;    /* attempts opened: connects (reported at their outcome, or pending), accepts */
	__u64 closes;
	__u64 bytes_sent;     /* the closes' payload bytes: SYN and FIN taken off */
	__u64 bytes_received;
	__u64 longest_ns;     /* the longest closed connection's duration */
	__u64 statuses[LM_FLOW_STATUSES]; /* records by enum lm_status: each outcome, each pending */
	__u32 ppid;	      /* the first record's */
	__u32 gid;
	__u32 mntns;
	__u32 _pad;
	char comm[LM_COMM_LEN];
};

/* Set by the loader before load (the .rodata initial value). */
/* lm_config.openings: connect outcomes (and pending), accepts. */
#define LM_OPEN_CONNECTS 1
#define LM_OPEN_ACCEPTS 2
#define LM_OPEN_NAMES_ONLY 4 /* connects are sent only for the DNS names their closes take (--events close) */

/* lm_config.include_ports: which sides' ports lm_incl_port lists (an -include that is
 * only port alternatives: a connection with none of them is dropped in the kernel). */
#define LM_INCL_REMOTE 1 /* dport/rport alternatives: key LM_PORT_REMOTE | port */
#define LM_INCL_LOCAL 2	 /* sport/lport alternatives: key LM_PORT_LOCAL | port */
#define LM_PORT_REMOTE (1U << 16)
#define LM_PORT_LOCAL (2U << 16)

struct lm_config {
	__u32 stash_on_state; /* 1: CLOSE->SYN_SENT stashes (tp strategies); 0: fentry/kprobe do */
	__u32 ipv4_only;      /* 1: drop AF_INET6 sockets that are not v4-mapped */
	__u32 self_pid;	      /* lightmon's own tgid, never reported */
	__u32 filter_dports;  /* 1: drop connects to the ports in lm_excl_dport at connect() */
	__u32 track_conns;    /* 1: keep lm_conns, emit accept and close records */
	__u32 openings;	      /* LM_OPEN_*: which opening records to emit; the rest only feed lm_conns */
	__u32 include_ports;  /* LM_INCL_*: 0, or keep only connections with a port lm_incl_port lists */
	__u32 flows;	      /* 1: every connection record is counted into its flow, none is sent (--flows) */
	__u32 overflow_at;    /* ring bytes: with more unread, new connections' records are counted into flows; 0: never */
	__u32 task_btf;	      /* 1: bpf_get_current_task_btf() exists (5.11+): the task's fields are plain loads */
};

_Static_assert(sizeof(struct lm_dns_query) == 792, "lm_dns_query layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_dns_event) == 1104, "lm_dns_event layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_conn_event) == 184, "lm_conn_event layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_exec_event) == 1608, "lm_exec_event layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_exit_event) == 24, "lm_exit_event layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_fork_event) == 40, "lm_fork_event layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_conn_state) == 104, "lm_conn_state layout changed");
_Static_assert(sizeof(struct lm_cgroup_key) == 16, "lm_cgroup_key layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_cgroup_names) == 192, "lm_cgroup_names layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_flow_key) == 72, "lm_flow_key layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_flow_stats) == 216, "lm_flow_stats layout changed: update src/capture/layout.ts");
_Static_assert(sizeof(struct lm_config) == 40, "lm_config layout changed: update src/capture/layout.ts");

#endif
