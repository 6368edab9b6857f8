/**
 * Container and pod identity from the cgroup names the kernel captured at
 * connect time (leaf and parent), for the runtimes' usual layouts on cgroup v1
 * and v2:
 *
 * | layout | leaf | parent |
 * |---|---|---|
 * | Docker, systemd driver | `docker-<id>.scope` | `system.slice` |
 * | Docker, cgroupfs driver | `<id>` | `docker` (or containerd's `moby`) |
 * | containerd, cgroupfs | `<id>` | its namespace: `default`, `k8s.io` |
 * | containerd (CRI), systemd | `cri-containerd-<id>.scope` | `kubepods-…-pod<uid>.slice` |
 * | CRI-O | `crio-<id>.scope` | `kubepods-…-pod<uid>.slice` |
 * | Podman | `libpod-<id>.scope` | `machine.slice` |
 * | Kubernetes, cgroupfs | `<id>` | `pod<uid>` |
 * @module
 */

/** What the cgroup names say. */
export interface CgroupIdentity {
  /** The container id (64 hex digits), or "" on the host. */
  containerId: string;
  /** docker, containerd, crio, podman, or "" when only the id's shape told. */
  runtime: string;
  /** The Kubernetes pod UID, or "". */
  podUid: string;
}

const SCOPED = /^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$/;
const BARE = /^[0-9a-f]{64}$/;
const POD = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;
const RUNTIME: Record<string, string> = {
  docker: "docker",
  "cri-containerd": "containerd",
  crio: "crio",
  libpod: "podman",
};

/**
 * The parents each runtime creates its containers' cgroups under, besides a
 * Kubernetes pod's cgroup (which every runtime may use). A leaf that looks like a
 * container under any other parent is someone's own cgroup (a user with a
 * delegated subtree can name theirs anything) and is reported as the host.
 */
const PARENTS: Record<string, readonly string[]> = {
  docker: ["system.slice"],
  "cri-containerd": [],
  crio: [],
  libpod: ["machine.slice"],
};
/** Parents of a bare 64-hex leaf (cgroupfs drivers): Docker's, and containerd's namespaces. */
const BARE_PARENTS: ReadonlyMap<string, string> = new Map([
  ["docker", "docker"],
  ["moby", "docker"],
  ["default", "containerd"],
  ["k8s.io", "containerd"],
]);

const HOST: CgroupIdentity = Object.freeze({ containerId: "", runtime: "", podUid: "" });

/**
 * Identify the container from a leaf cgroup name and its parent's.
 *
 * @example
 * ```ts
 * parseCgroup("docker-" + "a".repeat(64) + ".scope", "system.slice").runtime; // "docker"
 * ```
 */
export function parseCgroup(leaf: string, parent: string): CgroupIdentity {
  const pod = POD.exec(parent);
  const podUid = pod ? pod[1].replaceAll("_", "-") : "";
  const m = SCOPED.exec(leaf);
  if (m) {
    if (!pod && !PARENTS[m[1]].includes(parent)) return HOST;
    return { containerId: m[2], runtime: RUNTIME[m[1]], podUid };
  }
  if (BARE.test(leaf)) {
    if (pod) return { containerId: leaf, runtime: "", podUid };
    const runtime = BARE_PARENTS.get(parent);
    return runtime ? { containerId: leaf, runtime, podUid: "" } : HOST;
  }
  return podUid ? { containerId: "", runtime: "", podUid } : HOST;
}

const memo = new Map<string, CgroupIdentity>();
const MEMO_MAX = 4096;

let lastLeaf = "";
let lastParent = "";
let last: CgroupIdentity = HOST;

/**
 * parseCgroup, remembered: every event of a container carries the same two names
 * (the same strings: the decoder's cgroup cache hands them out), so a burst from one
 * costs two comparisons, not a key built per event.
 */
export function identifyCgroup(leaf: string, parent: string): CgroupIdentity {
  if (leaf === lastLeaf && parent === lastParent) return last;
  if (leaf === "" && parent === "") return HOST;
  const key = `${leaf}/${parent}`;
  let id = memo.get(key);
  if (!id) {
    id = parseCgroup(leaf, parent);
    if (memo.size >= MEMO_MAX) memo.clear();
    memo.set(key, id);
  }
  lastLeaf = leaf;
  lastParent = parent;
  last = id;
  return id;
}
