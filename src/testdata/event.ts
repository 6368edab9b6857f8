/**
 * A complete ConnEvent for unit tests; override what a test is about.
 * @module
 */
import type { ConnEvent, Flow } from "../event.ts";

/** An event with every field set to a plausible value. */
export function sampleEvent(over: Partial<ConnEvent> = {}): ConnEvent {
  return {
    kernelTime: 13898485459656n,
    wallNs: 1713334189162027869n,
    pid: 501750,
    tid: 501751,
    ppid: 1,
    uid: 0,
    gid: 0,
    user: "root",
    comm: "busybox",
    exe: "/usr/bin/busybox",
    args: ["busybox", "wget", "www.example.com"],
    procSource: "exec",
    family: 4,
    saddr: "10.1.8.14",
    sport: 7825,
    daddr: "183.2.172.17",
    dport: 443,
    dnsName: "",
    event: "connect",
    connId: 0,
    direction: "outbound",
    status: "established",
    latencyUs: 1200,
    durationMs: 0,
    bytesSent: 0,
    bytesReceived: 0,
    retransmits: 0,
    rttUs: 0,
    closedBy: "",
    existing: false,
    query: "",
    qtype: "",
    rcode: "",
    answers: [],
    container: "dreamy_carson",
    containerId: "a".repeat(64),
    containerRuntime: "docker",
    image: "busybox:latest",
    pod: "",
    namespace: "",
    cgroupId: 42n,
    mntns: 4026532178,
    netns: 4026531833,
    peer: undefined,
    novel: undefined,
    flow: undefined,
    ...over,
  };
}

/** A flow record's counts, for unit tests; override what a test is about. */
export function sampleFlow(over: Partial<Flow> = {}): Flow {
  return {
    connections: 4,
    statuses: [["established", 4]],
    closes: 0,
    firstSeen: 1713334189162027869n,
    lastSeen: 1713334189162027869n,
    intervalStart: 1713334189000000000n,
    intervalEnd: 1713334190000000000n,
    cause: "interval",
    folded: false,
    processes: 1,
    ...over,
  };
}
