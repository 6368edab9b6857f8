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
import { addressEnd, eventLine, flowLine, programOf, remoteOf, servicePort, workloadOf } from "./flow.ts";

/** A rule line that does not parse: the message says what is wrong with it. */
export class RuleError extends Error {}

/** A flow line, parsed. */
export interface Rule {
  inbound: boolean;
  program: string;
  /** `*`, a DNS name or glob (lower case), an address or a CIDR. */
  remote: string;
  portLo: number;
  portHi: number;
  /** The line as a learned flow would be written, when the rule has no pattern. */
  exact?: string;
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
function parseRemote(v: string): { remote: string; literal?: string } {
  if (v === "*") return { remote: v };
  const bare = v.startsWith("[") && v.endsWith("]") ? v.slice(1, -1) : v;
  if (!bare.includes("/") && ipaddr.isValid(bare)) {
    let a = ipaddr.parse(bare);
    if (a.kind() === "ipv6" && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
    // The text the decoder writes for this address (ipaddr's, RFC 5952 for v6).
    const text = a.toString();
    return { remote: text, literal: addressEnd(text, a.kind() === "ipv6" ? 6 : 4) };
  }
  if (addressMatcher(bare)) return { remote: bare };
  const name = bare.toLowerCase().replace(/\.$/, "");
  if (!NAME.test(name)) fail(`'${v}' is not a DNS name, a glob of one, an address, a CIDR or *`);
  return name.includes("*") ? { remote: name } : { remote: name, literal: name };
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
  if (literal !== undefined && !program.includes("*") && portLo === portHi) {
    rule.exact = flowLine(program, literal, portLo, inbound);
  }
  return rule;
}

type Check = (e: ConnEvent) => boolean;

/** A rule with patterns, compiled. */
function compile(r: Rule): Check {
  const program = r.program === "*" ? undefined : globMatcher(r.program);
  const addr = r.remote === "*" ? undefined : addressMatcher(r.remote);
  const name = r.remote === "*" || addr ? undefined : globMatcher(r.remote);
  return (e) => {
    if ((e.direction === "inbound") !== r.inbound) return false;
    const port = servicePort(e);
    if (port < r.portLo || port > r.portHi) return false;
    if (program && !program(programOf(e))) return false;
    if (addr) return addr(e.daddr);
    if (name) return e.dnsName !== "" && name(e.dnsName);
    return true;
  };
}

/** Verdicts of pattern rules remembered at most; then they are forgotten at once, and counted. */
const MAX_VERDICTS = 65536;

/** The rules of one or more baseline files, and the check of events against them. */
export class Baseline {
  /** `workload\0line` of every rule without patterns. */
  #exact = new Set<string>();
  /** Pattern rules by literal workload. */
  #byWorkload = new Map<string, Check[]>();
  /** Pattern rules (or any rules) of glob workloads. */
  #globWorkloads: { pattern: string; match: (w: string) => boolean; exact: Set<string>; checks: Check[] }[] = [];
  #verdicts = new Map<string, boolean>();
  #patterns = 0;
  /** Times the verdict memory was full and forgotten. */
  verdictResets = 0;

  /** Rules held. */
  get size(): number {
    return this.#exact.size + this.#patterns;
  }

  /** Add a rule under a workload (a name, or a glob of names). */
  add(workload: string, rule: Rule): void {
    if (workload.includes("*")) {
      let g = this.#globWorkloads.find((x) => x.pattern === workload);
      if (!g) {
        this.#globWorkloads.push(g = { pattern: workload, match: globMatcher(workload), exact: new Set(), checks: [] });
      }
      if (rule.exact !== undefined) g.exact.add(rule.exact);
      else g.checks.push(compile(rule));
      this.#patterns++;
    } else if (rule.exact !== undefined) {
      this.#exact.add(`${workload}\0${rule.exact}`);
    } else {
      const list = this.#byWorkload.get(workload);
      if (list) list.push(compile(rule));
      else this.#byWorkload.set(workload, [compile(rule)]);
      this.#patterns++;
    }
    this.#verdicts.clear();
  }

  /** Add a learned flow: a workload and a line without patterns. */
  addFlow(workload: string, line: string): void {
    this.#exact.add(`${workload}\0${line}`);
  }

  /** Whether a rule covers the event's flow (its workload, program, remote end, port, direction). */
  covers(e: ConnEvent): boolean {
    const w = workloadOf(e);
    const remote = remoteOf(e);
    const line = eventLine(e, remote);
    if (this.#exact.has(`${w}\0${line}`)) return true;
    // A flow learned by address (before its name was known, or with names off) covers it by name too.
    const named = remote === e.dnsName;
    const byAddress = named ? eventLine(e, addressEnd(e.daddr, e.family)) : line;
    if (named && this.#exact.has(`${w}\0${byAddress}`)) return true;
    if (this.#patterns === 0) return false;
    const key = `${w}\0${line}\0${e.daddr}`;
    const known = this.#verdicts.get(key);
    if (known !== undefined) return known;
    const verdict = this.#byPattern(w, line, byAddress, e);
    if (this.#verdicts.size >= MAX_VERDICTS) {
      this.#verdicts.clear();
      this.verdictResets++;
    }
    this.#verdicts.set(key, verdict);
    return verdict;
  }

  #byPattern(w: string, line: string, byAddress: string, e: ConnEvent): boolean {
    const checks = this.#byWorkload.get(w);
    if (checks && checks.some((c) => c(e))) return true;
    for (const g of this.#globWorkloads) {
      if (!g.match(w)) continue;
      if (g.exact.has(line) || g.exact.has(byAddress) || g.checks.some((c) => c(e))) return true;
    }
    return false;
  }
}
