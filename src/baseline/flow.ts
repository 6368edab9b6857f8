/**
 * A baseline flow: who (the workload and its program) talked to what (the remote
 * end's DNS name or address, the service port) in which direction. A workload
 * outlives its containers: a Kubernetes pod is its namespace and owner (the pod's
 * name without the ReplicaSet, DaemonSet or Job suffixes), another container its
 * image, a host process `host`. So a restarted container or a pod's second replica
 * is the same workload.
 *
 * In the baseline file a flow is one line under its workload:
 * `PROGRAM -> REMOTE:PORT` for a connection opened here, `PROGRAM :PORT <- REMOTE`
 * for one accepted on PORT. REMOTE is a workload on this host when one held the
 * address (`image db`, `pod web/api`), else a DNS name or an address.
 * @module
 */
import type { ConnEvent } from "../event.ts";

/** What Kubernetes appends random suffixes from (apimachinery's SafeEncodeString: no vowels, no 0, 1, 3). */
const SAFE = "[bcdfghjklmnpqrstvwxz2456789]";
/** A pod's own suffix under a ReplicaSet, DaemonSet or Job: five characters. */
const POD_SUFFIX = new RegExp(`-${SAFE}{5}$`);
/** A ReplicaSet's pod-template-hash (6 to 10 safe characters; digits on old clusters), or a CronJob's Job time (minutes). */
const OWNER_SUFFIX = new RegExp(`-(?:${SAFE}{6,10}|\\d{6,12})$`);
/** A StatefulSet replica's ordinal. */
const ORDINAL = /-\d{1,6}$/;

/**
 * The name of a pod's owner, from the pod's name: `web-7f9c6d5b8-x2kq4` (a
 * Deployment's) and `fluentd-x2kq4` (a DaemonSet's or Job's) lose their generated
 * suffixes, `db-2` (a StatefulSet's) its ordinal. Patterns are anchored with bounded
 * repeats: linear in the name.
 *
 * @example
 * ```ts
 * podOwner("web-7f9c6d5b8-x2kq4"); // "web"
 * ```
 */
export function podOwner(pod: string): string {
  if (POD_SUFFIX.test(pod)) {
    const rest = pod.replace(POD_SUFFIX, "");
    return rest === "" ? pod : rest.replace(OWNER_SUFFIX, "") || rest;
  }
  return pod.replace(ORDINAL, "") || pod;
}

/** A container's workload, remembered with the metadata it was made from (which can arrive late). */
interface Known {
  pod: string;
  namespace: string;
  image: string;
  container: string;
  workload: string;
}
const byContainer = new Map<string, Known>();
const MAX_CONTAINERS = 4096;

/**
 * The workload of a container with this metadata: `pod NAMESPACE/OWNER`, `image IMAGE` or
 * `container NAME`, remembered by id.
 */
function containerWorkload(id: string, pod: string, namespace: string, image: string, container: string): string {
  const k = byContainer.get(id);
  if (k && k.pod === pod && k.namespace === namespace && k.image === image && k.container === container) {
    return k.workload;
  }
  const workload = pod ? `pod ${namespace || "default"}/${podOwner(pod)}` : image
    ? `image ${image}`
    // No metadata: the name is the best guess there is (a new container of it will look new).
    : `container ${container || id.slice(0, 12)}`;
  if (byContainer.size >= MAX_CONTAINERS) byContainer.clear();
  byContainer.set(id, { pod, namespace, image, container, workload });
  return workload;
}

/** The workload an event belongs to: `pod NAMESPACE/OWNER`, `image IMAGE`, `container NAME` or `host`. */
export function workloadOf(e: ConnEvent): string {
  if (!e.containerId) return "host";
  return containerWorkload(e.containerId, e.pod, e.namespace, e.image, e.container);
}

/** The workload at the remote end, when it is a container or pod on this host; "" otherwise. */
export function peerWorkloadOf(e: ConnEvent): string {
  const p = e.peer;
  return p === undefined ? "" : containerWorkload(p.containerId, p.pod, p.namespace, p.image, p.container);
}

/** The workload kinds a flow line's remote end may name (`-> image db:5432`, `:80 <- pod web/api`). */
export const PEER_WORKLOAD = /^(?:pod|image|container) \S/;

/** The program of a flow: the executable's path, or the thread's name when the path is unknown. */
export function programOf(e: ConnEvent): string {
  return e.exe || e.comm || "?";
}

/** A DNS name that can stand in a flow line as it is (no spaces, no syntax of ours). */
const PLAIN_NAME = /^[a-z0-9_][a-z0-9_.-]{0,252}$/;
const plainNames = new Map<string, boolean>();
const MAX_PLAIN_NAMES = 4096;

/** The event's DNS name when it can name a flow (plain: no spaces, no syntax of ours), else "". */
export function flowName(e: ConnEvent): string {
  const n = e.dnsName;
  if (n === "") return n;
  let plain = plainNames.get(n);
  if (plain === undefined) {
    plain = PLAIN_NAME.test(n);
    if (plainNames.size >= MAX_PLAIN_NAMES) plainNames.clear();
    plainNames.set(n, plain);
  }
  return plain ? n : "";
}

/** The remote end of a flow for an address: v6 in brackets, so that the port after it reads plainly. */
export function addressEnd(addr: string, family: 4 | 6): string {
  return family === 6 ? `[${addr}]` : addr;
}

/**
 * The remote end as a flow line names it: the local workload at its address (a
 * restarted container with a new address is the same flow), else the DNS name when
 * the event has a plain one, else the address.
 */
export function remoteOf(e: ConnEvent): string {
  return peerWorkloadOf(e) || flowName(e) || addressEnd(e.daddr, e.family);
}

/** The port a flow is to: the remote port of a connect, the local port of an accept. */
export function servicePort(e: ConnEvent): number {
  return e.direction === "inbound" ? e.sport : e.dport;
}

/** A flow line: `PROGRAM -> REMOTE:PORT` or `PROGRAM :PORT <- REMOTE`. */
export function flowLine(program: string, remote: string, port: number, inbound: boolean): string {
  return inbound ? `${program} :${port} <- ${remote}` : `${program} -> ${remote}:${port}`;
}

/** The flow line of an event, with `remote` as its remote end. */
export function eventLine(e: ConnEvent, remote = remoteOf(e)): string {
  return flowLine(programOf(e), remote, servicePort(e), e.direction === "inbound");
}

/** Whether an event is part of a flow: connections opened, accepted and closed; DNS answers are not. */
export function isFlowEvent(e: ConnEvent): boolean {
  return e.event !== "dns";
}
