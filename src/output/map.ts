/**
 * `--output summary --summary-format dot|mermaid`: the run's flows as a map of who
 * talks to whom. One node per workload on this host (a container, a pod, a host
 * program) and per remote end that is not one (its DNS name, else its address);
 * one edge per flow, from the end that opened it to the end that accepted it, with
 * its port, connections and bytes. A remote end that is a local container or pod
 * (`peerContainer`) is that workload's own node, so the map links them, as is a
 * host program's connection to one (found by its addresses and ports); and a
 * connection seen at both ends (the client's connect, the server's accept) is
 * counted once.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { humanBytes } from "../fields.ts";
import { forTerminal } from "../text/sanitize.ts";

/** A map's format: Graphviz's DOT, or a Mermaid flowchart (rendered by GitHub and GitLab). */
export type MapFormat = "dot" | "mermaid";

type Kind = "container" | "host" | "remote";

interface MapNode {
  id: string;
  kind: Kind;
  /** Its lines: a container's name and image, a host program's path, a remote end's name. */
  lines: string[];
}

/** What one end saw of an edge's connections: each end reports them, and they are one set. */
interface Side {
  opens: number;
  closes: number;
  /** Payload bytes from the opener to the acceptor, and back. */
  forth: number;
  back: number;
}

interface Edge {
  from: MapNode;
  to: MapNode;
  port: number;
  /** As the opener reported them, and as the acceptor did. */
  out: Side;
  in: Side;
}

/** A node before it is kept: its key, kind and lines. */
interface NodeSpec {
  key: string;
  kind: Kind;
  lines: string[];
}

const newSide = (): Side => ({ opens: 0, closes: 0, forth: 0, back: 0 });

/** A workload's node, from its container fields (the local end's, or the peer's). */
function workloadNode(
  pod: string,
  namespace: string,
  container: string,
  id: string,
  image: string,
): NodeSpec {
  if (pod) return { key: `pod\0${namespace}/${pod}`, kind: "container", lines: [`${namespace}/${pod}`, "pod"] };
  const name = container || id.slice(0, 12);
  return { key: `container\0${id}`, kind: "container", lines: image ? [name, image] : [name] };
}

/** Connections opened here remembered at most, for the accepting end's records to find their opener. */
const MAX_OPENERS = 65_536;

/** The edges and nodes of a run, bounded. */
export class FlowMap {
  #nodes = new Map<string, MapNode>();
  #edges = new Map<string, Edge>();
  /** Who opened each connection opened here, by its addresses and ports (opener's first). */
  #openers = new Map<string, NodeSpec>();
  #max: number;
  /** Records of edges past the cap. */
  overflow = 0;

  constructor(max: number) {
    this.#max = max;
  }

  /** Edges kept. */
  get size(): number {
    return this.#edges.size;
  }

  #node(spec: NodeSpec): MapNode {
    let n = this.#nodes.get(spec.key);
    if (!n) this.#nodes.set(spec.key, n = { id: `n${this.#nodes.size}`, kind: spec.kind, lines: spec.lines });
    return n;
  }

  /** The event's own end. */
  #local(e: ConnEvent): NodeSpec {
    if (!e.containerId) return { key: `host\0${e.exe || e.comm}`, kind: "host", lines: [e.exe || e.comm, "host"] };
    return workloadNode(e.pod, e.namespace, e.container, e.containerId, e.image);
  }

  /** The other end: a local workload's node when one held the address, else its name or address. */
  #remote(e: ConnEvent): NodeSpec {
    const p = e.peer;
    if (p) {
      return workloadNode(p.pod, p.namespace, p.container, p.containerId, p.image);
    }
    if (e.flow?.folded) return { key: "remote\0*", kind: "remote", lines: ["* (folded)"] };
    const name = e.dnsName || e.daddr;
    return { key: `remote\0${name}`, kind: "remote", lines: [name] };
  }

  #opened(tuple: string, by: NodeSpec): void {
    if (this.#openers.size >= MAX_OPENERS && !this.#openers.has(tuple)) {
      this.#openers.delete(this.#openers.keys().next().value!);
    }
    this.#openers.set(tuple, by);
  }

  /** One record: a connection's opening or close, or a flow's counts. */
  add(e: ConnEvent): void {
    if (e.event === "dns" || e.status === "pending") return;
    const inbound = e.direction === "inbound";
    const local = this.#local(e);
    let remote: NodeSpec | undefined;
    if (!e.flow) {
      // Both ends on this host (a host program calling a container through its bridge's address): the
      // accepting end's record finds the opener's node by the connection's addresses and ports.
      if (!inbound) this.#opened(`${e.saddr} ${e.sport} ${e.daddr} ${e.dport}`, local);
      else if (!e.peer) remote = this.#openers.get(`${e.daddr} ${e.dport} ${e.saddr} ${e.sport}`);
    }
    remote ??= this.#remote(e);
    const [from, to] = inbound ? [remote, local] : [local, remote];
    const port = inbound ? e.sport : e.dport;
    const key = `${from.key}\x01${to.key}\x01${port}`;
    let edge = this.#edges.get(key);
    if (!edge) {
      // Past the cap nothing new is kept, nodes included: a peer cannot grow the map by new addresses.
      if (this.#edges.size >= this.#max) {
        this.overflow++;
        return;
      }
      // The record's own end is numbered first, as it is met.
      const [l, r] = [this.#node(local), this.#node(remote)];
      const [f, t] = inbound ? [r, l] : [l, r];
      this.#edges.set(key, edge = { from: f, to: t, port, out: newSide(), in: newSide() });
    }
    const side = inbound ? edge.in : edge.out;
    // The opener sends what the acceptor receives.
    const [forth, back] = inbound ? [e.bytesReceived, e.bytesSent] : [e.bytesSent, e.bytesReceived];
    if (e.flow) {
      side.opens += e.flow.connections;
      side.closes += e.flow.closes;
    } else if (e.event === "close") side.closes++;
    else side.opens++;
    if (e.event === "close" || e.flow) {
      side.forth += forth;
      side.back += back;
    }
  }

  /** The map in `format`. */
  text(format: MapFormat): string {
    return format === "dot" ? this.#dot() : this.#mermaid();
  }

  /** Each edge's figures: connections (each end's count of them is the same set: the larger), bytes. */
  #figures(edge: Edge): string[] {
    const conns = Math.max(edge.out.opens, edge.out.closes, edge.in.opens, edge.in.closes);
    const bytes = edge.out.closes > 0 ? edge.out : edge.in;
    const lines = [`:${edge.port}`, `${conns} conn${conns === 1 ? "" : "s"}`];
    if (bytes.forth + bytes.back > 0) lines.push(`${humanBytes(bytes.forth)} / ${humanBytes(bytes.back)}`);
    return lines;
  }

  #dot(): string {
    const out = [
      "digraph lightmon {",
      "  rankdir=LR;",
      '  node [fontname="Helvetica", fontsize=10];',
      '  edge [fontname="Helvetica", fontsize=9];',
    ];
    const shape: Record<Kind, string> = { container: "box", host: "box, style=rounded", remote: "ellipse" };
    for (const n of this.#nodes.values()) {
      out.push(`  ${n.id} [shape=${shape[n.kind]}, label=${dotString(n.lines.join("\n"))}];`);
    }
    for (const e of this.#edges.values()) {
      out.push(`  ${e.from.id} -> ${e.to.id} [label=${dotString(this.#figures(e).join("\n"))}];`);
    }
    if (this.overflow > 0) out.push(`  // ${this.overflow} records of flows past the first ${this.#max} are not drawn`);
    out.push("}");
    return out.join("\n");
  }

  #mermaid(): string {
    const out = ["flowchart LR"];
    const open: Record<Kind, [string, string]> = { container: ["[", "]"], host: ["(", ")"], remote: ["([", "])"] };
    for (const n of this.#nodes.values()) {
      const [a, b] = open[n.kind];
      out.push(`  ${n.id}${a}"${mermaidText(n.lines)}"${b}`);
    }
    for (const e of this.#edges.values()) {
      out.push(`  ${e.from.id} -->|"${mermaidText(this.#figures(e))}"| ${e.to.id}`);
    }
    if (this.overflow > 0) out.push(`  %% ${this.overflow} records of flows past the first ${this.#max} are not drawn`);
    return out.join("\n");
  }
}

/**
 * A DOT quoted string: control and bidi characters made visible (a process or a
 * container may be named anything), then backslashes and quotes escaped, so that
 * nothing in a name ends the string or becomes a DOT escape; lines joined by `\n`.
 */
export function dotString(text: string): string {
  const lines = text.split("\n").map((l) => forTerminal(l).replace(/\\/g, "\\\\").replace(/"/g, '\\"'));
  return `"${lines.join("\\n")}"`;
}

/**
 * Mermaid label text: control characters made visible, and every character that
 * means something to Mermaid or to the HTML it renders as its entity code, so that
 * a name can neither end the label nor add markup; lines joined by `<br>`.
 */
export function mermaidText(lines: readonly string[]): string {
  return lines.map((l) => forTerminal(l).replace(/["#<>&|`{}[\]()]/g, (c) => `#${c.charCodeAt(0)};`)).join("<br>");
}
