/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few kernel types lightmon reads, declared by hand for CO-RE.
 *
 * Only the fields we touch are listed; preserve_access_index makes libbpf relocate
 * every access against the running kernel's BTF, so the order and offsets here do not
 * matter. This replaces a generated 3 MB vmlinux.h.
 */
#ifndef LIGHTMON_VMLINUX_MIN_H
#define LIGHTMON_VMLINUX_MIN_H
/* Tells bpf_tracing.h to use the kernel's pt_regs names (di, si, ...). */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef int pid_t;
typedef _Bool bool;
#define true 1
#define false 0
typedef __u32 u32;
typedef __u64 u64;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

#define BPF_F_NO_PREALLOC 1

/* bpf_ringbuf_query() flags */
enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

struct ns_common {
	unsigned int inum;
};

struct net {
	__u64 net_cookie; /* 5.14+ */
	struct ns_common ns;
};

typedef struct {
	__s64 counter;
} atomic64_t;

/* Before 5.14 the cookie was an atomic64_t. */
struct net___atomic_cookie {
	atomic64_t net_cookie;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	union {
		struct {
			__be32 skc_daddr;
			__be32 skc_rcv_saddr;
		};
	};
	union {
		struct {
			__be16 skc_dport;
			__u16 skc_num;
		};
	};
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	unsigned long skc_flags; /* struct sock's sk_flags */
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	int sk_err;
	struct {
		__u32 val;
	} sk_uid; /* kuid_t: the socket's creator; an accepted one's is its listener's */
};

struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
};

struct mnt_namespace {
	struct ns_common ns;
};

struct nsproxy {
	struct mnt_namespace *mnt_ns;
};

/*
 * kernfs_node.parent was renamed __parent in Linux 6.15 (RCU-protected accessors);
 * the ___old flavor lets one object read either.
 */
struct kernfs_iattrs {
	struct {
		__u32 val;
	} ia_uid; /* kuid_t; set once the node is chowned */
};

struct kernfs_node {
	struct kernfs_node *__parent;
	const char *name;
	unsigned short mode; /* umode_t */
	__u64 id;
	struct kernfs_iattrs *iattr; /* NULL: never chowned or chmodded, root's */
};

struct kernfs_node___old {
	struct kernfs_node___old *parent;
};

struct cgroup_root {
	int hierarchy_id;
};

struct cgroup {
	struct kernfs_node *kn;
	int level;
	struct cgroup_root *root;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

struct css_set {
	struct cgroup_subsys_state *subsys[14];
	struct cgroup *dfl_cgrp;
};

struct cred {
	struct {
		__u32 val;
	} uid;
	struct {
		__u32 val;
	} gid;
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
};

struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};
	const unsigned char *name;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
};

struct vfsmount {
	struct dentry *mnt_root;
};

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct fs_struct {
	struct path root;
	struct path pwd;
};

struct task_struct {
	struct fs_struct *fs;
	struct files_struct *files;
	pid_t pid;
	pid_t tgid;
	__u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	const struct cred *cred;
	struct nsproxy *nsproxy;
	struct css_set *cgroups;
	struct mm_struct *mm;
	char comm[16];
};

struct tcp_sock {
	__u32 snd_una;
	__u32 write_seq;
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 total_retrans;
	__u32 srtt_us;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct pt_regs {
	unsigned long di, si, dx, cx, r8, r9, ax, bx, bp, sp, ip;
};

struct inode {
	unsigned short i_mode;
};

struct file {
	struct inode *f_inode;
	void *private_data;
};

struct socket {
	short type;
	struct sock *sk;
};

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
};

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
};

struct linux_binprm {
	const char *filename;
};

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_inet_sock_set_state {
	struct trace_entry ent;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 protocol;
};

struct trace_event_raw_sched_process_exec {
	struct trace_entry ent;
	__u32 __data_loc_filename;
	pid_t pid;
	pid_t old_pid;
};

#pragma clang attribute pop

/* Only to ask, with bpf_core_enum_value_exists(), whether the kernel has bpf_loop. */
enum bpf_func_id {
	BPF_FUNC_loop = 181,
};

enum cgroup_subsys_id {
	memory_cgrp_id = 4,
};

/*
 * tcp:tcp_retransmit_skb's record. Its BTF type is trace_event_raw_tcp_retransmit_skb
 * on 6.18 but trace_event_raw_tcp_event_sk_skb on 6.1, while the leading fields kept
 * their offsets since 4.16: read them by this fixed layout instead of CO-RE.
 */
struct lm_tp_retransmit {
	__u64 common;
	const void *skbaddr;
	const void *skaddr;
	int state;
};

/* syscalls:sys_exit_* records: the same fixed layout for every syscall since 3.x. */
struct lm_tp_sys_exit {
	__u64 common;
	long nr;
	long ret;
};

/* The context of cgroup_skb programs (UAPI, fixed layout): up to what is read. */
/* Accessed by these exact offsets (linux/bpf.h), never relocated. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;	/* offset 76 */
	__u32 data_end; /* offset 80 */
};
_Static_assert(__builtin_offsetof(struct __sk_buff, data) == 76, "struct __sk_buff is the UAPI's");

#endif
