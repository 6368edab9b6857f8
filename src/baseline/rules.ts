/**
 * A baseline's rules and the check of an event against them. A rule is a flow
 * line (flow.ts) whose parts may be patterns: `*` and globs for the program and
 * for DNS names, addresses and CIDRs for the remote end, `*` or a range for the
 * port; its workload (the key it is listed under) may be a glob too. Rules without
 * patterns, which is every learned one, are found in one Set lookup; the rest are
 * tried in order, and their verdicts remembered (bounded).
 * @module
 */
import ipaddr from "ipaddr.js";
import type { ConnEvent } from "../event.ts";
import { addressMatcher, globMatcher } from "../filter/compile.ts";
import { PEER_WORKLOAD, peerWorkloadOf, programOf, servicePort, workloadOf } from "./flow.ts";

/** A rule line that does not parse: the message says what is wrong with it. */
export class RuleError extends Error {}

/** A flow line, parsed. */
export interface Rule {
  inbound: boolean;
  program: string;
  /** `*`, a workload on this host (`image db`, a glob of one), a DNS name or glob (lower case), an address or a CIDR. */
  remote: string;
  portLo: number;
  portHi: number;
  /** Set when the rule has no pattern: the remote end as events carry it (a name, or an address without brackets). */
  exact?: { remote: string };
}

const fail = (msg: string): never => {
  throw new RuleError(msg);
};

const NAME = /^[a-z0-9_*][a-z0-9_.*-]*$/;

function parsePort(v: string): [number, number] {
  if (v === "*") return [0, 65535];
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(v);
  const lo = Number(m?.[1]);
  const hi = m?.[2] === undefined ? lo : Number(m[2]);
  if (!m || lo < 1 || hi > 65535 || lo > hi) fail(`'${v}' is not a port (1-65535), a range (8000-8099) or *`);
  return [lo, hi];
}

/** The remote end in its canonical form, and whether it is one literal value. */
function parseRemote(v: string): { remote: string; literal?: boolean } {
  if (v === "*") return { remote: v };
  if (PEER_WORKLOAD.test(v)) {
    // A workload's name is its runtime's text: as it is, spaces and all past the kind's.
    if (/\s/.test(v.slice(v.indexOf(" ") + 1))) fail(`'${v}': a workload's name has no spaces`);
    return { remote: v, literal: !v.includes("*") };
  }
  const bare = v.startsWith("[") && v.endsWith("]") ? v.slice(1, -1) : v;
  // Only what could be an address goes to ipaddr: its refusals are exceptions, slow by the ten thousand.
  if (!bare.includes(":") && !/^[\d.]+(?:\/\d+)?$/.test(bare)) return parseName(v, bare);
  if (!bare.includes("/") && ipaddr.isValid(bare)) {
    let a = ipaddr.parse(bare);
    if (a.kind() === "ipv6" && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
    // The text the decoder writes for this address (ipaddr's, RFC 5952 for v6).
    return { remote: a.toString(), literal: true };
  }
  if (addressMatcher(bare)) return { remote: bare };
  return parseName(v, bare);
}

function parseName(v: string, bare: string): { remote: string; literal?: boolean } {
  const name = bare.toLowerCase().replace(/\.$/, "");
  if (!NAME.test(name)) fail(`'${v}' is not a DNS name, a glob of one, an address, a CIDR or *`);
  return { remote: name, literal: !name.includes("*") };
}

/**
 * Parse one flow line: `PROGRAM -> REMOTE:PORT` (outbound) or
 * `PROGRAM :PORT <- REMOTE` (inbound). Throws RuleError.
 *
 * @example
 * ```ts
 * parseRule("/usr/bin/curl -> *.example.com:443");
 * ```
 */
export function parseRule(line: string): Rule {
  // Trimmed at the end only: a line that starts with its arrow has no program, and says so.
  const text = line.trimEnd();
  const out = text.lastIndexOf(" -> ");
  const inn = text.lastIndexOf(" <- ");
  if (out < 0 && inn < 0) fail("expected 'PROGRAM -> REMOTE:PORT' or 'PROGRAM :PORT <- REMOTE'");
  const inbound = inn > out;
  let program: string, remoteText: string, portText: string;
  if (inbound) {
    const left = text.slice(0, inn);
    const sp = left.lastIndexOf(" :");
    if (sp < 0) fail("an inbound flow names its local port: 'PROGRAM :PORT <- REMOTE'");
    program = left.slice(0, sp).trim();
    portText = left.slice(sp + 2).trim();
    remoteText = text.slice(inn + 4).trim();
  } else {
    program = text.slice(0, out).trim();
    const right = text.slice(out + 4).trim();
    const colon = right.lastIndexOf(":");
    if (colon < 0) fail("an outbound flow names the remote port: 'PROGRAM -> REMOTE:PORT'");
    remoteText = right.slice(0, colon);
    portText = right.slice(colon + 1);
  }
  if (program === "") fail("the program is missing (a path, a glob of one, or *)");
  const [portLo, portHi] = parsePort(portText);
  const { remote, literal } = parseRemote(remoteText);
  const rule: Rule = { inbound, program, remote, portLo, portHi };
  if (literal && !program.includes("*") && portLo === portHi) rule.exact = { remote };
  return rule;
}

/** A flow as the rules see it: what an event's flow, or a flow line of another baseline, is. */
interface FlowKey {
  program: string;
  /** The workload on this host at the remote end (`image db`), or "". */
  peer: string;
  /** The DNS name of the remote end, or "". */
  name: string;
  /** Its address, or "" (a flow line that names the remote end by name). */
  addr: string;
  port: number;
  inbound: boolean;
}

type Check = (f: FlowKey) => boolean;

/** A rule with patterns, compiled. */
function compile(r: Rule): Check {
  const program = r.program === "*" ? undefined : globMatcher(r.program);
  const peer = PEER_WORKLOAD.test(r.remote) ? globMatcher(r.remote) : undefined;
  const addr = r.remote === "*" || peer ? undefined : addressMatcher(r.remote);
  const name = r.remote === "*" || addr || peer ? undefined : globMatcher(r.remote);
  return (f) => {
    if (f.inbound !== r.inbound) return false;
    if (f.port < r.portLo || f.port > r.portHi) return false;
    if (program && !program(f.program)) return false;
    if (peer) return f.peer !== "" && peer(f.peer);
    if (addr) return f.addr !== "" && addr(f.addr);
    if (name) return f.name !== "" && name(f.name);
    return true;
  };
}

/** Rules without patterns: program, then remote end (a name, or an address), then port and direction. */
type Exact = Map<string, Map<string, Set<number>>>;

/** Port and direction as one number. */
const portDir = (port: number, inbound: boolean) => port * 2 + (inbound ? 1 : 0);

function addExact(x: Exact, program: string, remote: string, pd: number): void {
  let byRemote = x.get(program);
  if (!byRemote) x.set(program, byRemote = new Map());
  const ports = byRemote.get(remote);
  if (ports) ports.add(pd);
  else byRemote.set(remote, new Set([pd]));
}

/** Whether `x` has the flow by the remote end's workload or name (when it has them) or by its address. */
function hasExact(x: Exact, program: string, peer: string, name: string, addr: string, pd: number): boolean {
  const byRemote = x.get(program);
  if (!byRemote) return false;
  return (peer !== "" && byRemote.get(peer)?.has(pd) === true) ||
    (name !== "" && byRemote.get(name)?.has(pd) === true) || byRemote.get(addr)?.has(pd) === true;
}

/** What applies to one workload besides its own exact rules. */
interface Extra {
  exacts: Exact[];
  checks: Check[];
}

/** Workloads whose extra rules are remembered at most. */
const MAX_WORKLOADS = 4096;
/** Past this many pattern rules for a workload, their verdicts are remembered (bounded). */
const REMEMBER_PAST = 8;
/** Verdicts remembered at most; then they are forgotten at once, and counted. */
const MAX_VERDICTS = 65536;

/** The rules of one or more baseline files, and the check of events against them. */
export class Baseline {
  /** Rules without patterns, by literal workload. */
  #exact = new Map<string, Exact>();
  /** Pattern rules by literal workload. */
  #checks = new Map<string, Check[]>();
  /** Rules of glob workloads. */
  #globs: { pattern: string; match: (w: string) => boolean; exact: Exact; checks: Check[] }[] = [];
  #extra = new Map<string, Extra>();
  #verdicts = new Map<string, boolean>();
  #rules = 0;
  #patterns = 0;
  /** Times the verdict memory was full and forgotten. */
  verdictResets = 0;

  /** Rules held. */
  get size(): number {
    return this.#rules;
  }

  /** Add a rule under a workload (a name, or a glob of names). */
  add(workload: string, rule: Rule): void {
    if (workload.includes("*")) {
      this.#rules++;
      let g = this.#globs.find((x) => x.pattern === workload);
      if (!g) this.#globs.push(g = { pattern: workload, match: globMatcher(workload), exact: new Map(), checks: [] });
      if (rule.exact) addExact(g.exact, rule.program, rule.exact.remote, portDir(rule.portLo, rule.inbound));
      else g.checks.push(compile(rule));
      this.#patterns++;
    } else if (rule.exact) {
      this.addFlow(workload, rule.program, rule.exact.remote, rule.portLo, rule.inbound);
    } else {
      this.#rules++;
      const list = this.#checks.get(workload);
      if (list) list.push(compile(rule));
      else this.#checks.set(workload, [compile(rule)]);
      this.#patterns++;
    }
    this.#extra.clear();
    this.#verdicts.clear();
  }

  /** Add a flow without patterns: `remote` is a DNS name or an address (no brackets). */
  addFlow(workload: string, program: string, remote: string, port: number, inbound: boolean): void {
    let x = this.#exact.get(workload);
    if (!x) this.#exact.set(workload, x = new Map());
    addExact(x, program, remote, portDir(port, inbound));
    this.#rules++;
  }

  /** Whether a rule covers the event's flow (its workload, program, remote end, port, direction). */
  covers(e: ConnEvent): boolean {
    // The name as it is: one that is not plain cannot be in a rule (parseRule refuses it), and misses.
    return this.#coversFlow(
      workloadOf(e),
      programOf(e),
      peerWorkloadOf(e),
      e.dnsName,
      e.daddr,
      servicePort(e),
      e.direction === "inbound",
    );
  }

  /**
   * Whether a rule covers the flow of a rule without patterns listed under a
   * workload that is a name (merging baselines: such a line adds nothing); false
   * for a rule with patterns or a glob workload, which only the same line covers.
   */
  coversRule(workload: string, rule: Rule): boolean {
    if (!rule.exact || workload.includes("*")) return false;
    const remote = rule.exact.remote;
    const isAddr = ipaddr.isValid(remote);
    const isPeer = PEER_WORKLOAD.test(remote);
    return this.#coversFlow(
      workload,
      rule.program,
      isPeer ? remote : "",
      isAddr || isPeer ? "" : remote,
      isAddr ? remote : "",
      rule.portLo,
      rule.inbound,
    );
  }

  #coversFlow(
    w: string,
    program: string,
    peer: string,
    name: string,
    addr: string,
    port: number,
    inbound: boolean,
  ): boolean {
    const pd = portDir(port, inbound);
    const x = this.#exact.get(w);
    // A flow learned by address (before its name was known, or with names off) covers it by name too.
    if (x && hasExact(x, program, peer, name, addr, pd)) return true;
    if (this.#patterns === 0) return false;
    const extra = this.#extraFor(w);
    for (const g of extra.exacts) if (hasExact(g, program, peer, name, addr, pd)) return true;
    const checks = extra.checks;
    const flow: FlowKey = { program, peer, name, addr, port, inbound };
    if (checks.length <= REMEMBER_PAST) {
      for (const c of checks) if (c(flow)) return true;
      return false;
    }
    const key = `${w}\0${program}\0${peer}\0${name}\0${addr}\0${pd}`;
    const known = this.#verdicts.get(key);
    if (known !== undefined) return known;
    const verdict = checks.some((c) => c(flow));
    if (this.#verdicts.size >= MAX_VERDICTS) {
      this.#verdicts.clear();
      this.verdictResets++;
    }
    this.#verdicts.set(key, verdict);
    return verdict;
  }

  /** A workload's pattern rules and the exact rules of the glob workloads it matches. */
  #extraFor(w: string): Extra {
    let extra = this.#extra.get(w);
    if (extra) return extra;
    extra = { exacts: [], checks: [...(this.#checks.get(w) ?? [])] };
    for (const g of this.#globs) {
      if (!g.match(w)) continue;
      if (g.exact.size) extra.exacts.push(g.exact);
      extra.checks.push(...g.checks);
    }
    if (this.#extra.size >= MAX_WORKLOADS) this.#extra.clear();
    this.#extra.set(w, extra);
    return extra;
  }
}
