/**
 * Filter expressions compiled once, at start-up, into a predicate over events.
 * The field table below says how each field's value is parsed and matched.
 * @module
 */
import ipaddr from "ipaddr.js";
import { STATUS_NAMES } from "../capture/layout.ts";
import type { ConnEvent } from "../event.ts";
import { FilterSyntaxError, type Node, parseFilter } from "./parse.ts";

/** A compiled filter. */
export type Predicate = (e: ConnEvent) => boolean;

type Matcher = (value: string, column: number) => Predicate;

const fail = (msg: string, column: number): never => {
  throw new FilterSyntaxError(msg, column);
};

function intField(name: string, get: (e: ConnEvent) => number, max: number): Matcher {
  return (v, col) => {
    if (!/^\d+$/.test(v) || Number(v) > max) fail(`${name} needs a whole number up to ${max}, not '${v}'`, col);
    const n = Number(v);
    return (e) => get(e) === n;
  };
}

/** Exact match, or a glob when the value contains '*'. */
function textField(get: (e: ConnEvent) => string): Matcher {
  return (v) => {
    if (!v.includes("*")) return (e) => get(e) === v;
    const re = new RegExp("^" + v.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$", "s");
    return (e) => re.test(get(e));
  };
}

function substringField(get: (e: ConnEvent) => string): Matcher {
  return (v) => (e) => get(e).includes(v);
}

function choiceField(name: string, get: (e: ConnEvent) => string, choices: Record<string, string>): Matcher {
  return (v, col) => {
    const want = choices[v.toLowerCase()];
    if (want === undefined) fail(`${name} is one of ${Object.keys(choices).join(", ")}, not '${v}'`, col);
    return (e) => get(e) === want;
  };
}

type Parsed = ipaddr.IPv4 | ipaddr.IPv6;

// Parsing an address costs more than comparing it: remember recent ones.
const parsedCache = new Map<string, Parsed>();
function parsedAddress(a: string): Parsed {
  let p = parsedCache.get(a);
  if (!p) {
    p = ipaddr.parse(a);
    if (parsedCache.size >= 4096) parsedCache.clear();
    parsedCache.set(a, p);
  }
  return p;
}

/** An IP or CIDR, v4 or v6; v4-mapped IPv6 values mean their IPv4 address. */
function ipField(name: string, get: (e: ConnEvent) => string): Matcher {
  return (v, col) => {
    let range: [Parsed, number];
    try {
      range = v.includes("/") ? ipaddr.parseCIDR(v) : (() => {
        const a = ipaddr.parse(v);
        return [a, a.kind() === "ipv4" ? 32 : 128] as [Parsed, number];
      })();
    } catch {
      return fail(`${name} needs an IP address or CIDR, not '${v}'`, col);
    }
    let [net, bits] = range;
    if (net.kind() === "ipv6" && (net as ipaddr.IPv6).isIPv4MappedAddress()) {
      net = (net as ipaddr.IPv6).toIPv4Address();
      bits = Math.max(0, bits - 96);
    }
    const kind = net.kind();
    return (e) => {
      const a = parsedAddress(get(e));
      return a.kind() === kind && a.match(net, bits);
    };
  };
}

const STATUSES = Object.fromEntries(
  STATUS_NAMES.filter((s) => s !== "unknown" && s !== "listen").map((s) => [s, s]),
);

/** The filterable fields. */
export const FILTER_FIELDS: Readonly<Record<string, Matcher>> = {
  // the original's four
  dport: intField("dport", (e) => e.dport, 65535),
  dip: ipField("dip", (e) => e.daddr),
  keyword: (v) => (e) => e.exe.includes(v) || e.comm.includes(v),
  container: substringField((e) => e.container),
  // ours
  sport: intField("sport", (e) => e.sport, 65535),
  sip: ipField("sip", (e) => e.saddr),
  pid: intField("pid", (e) => e.pid, 2 ** 32 - 1),
  ppid: intField("ppid", (e) => e.ppid, 2 ** 32 - 1),
  uid: intField("uid", (e) => e.uid, 2 ** 32 - 1),
  user: textField((e) => e.user),
  comm: textField((e) => e.comm),
  exe: textField((e) => e.exe),
  pod: textField((e) => e.pod),
  namespace: textField((e) => e.namespace),
  image: textField((e) => e.image),
  status: choiceField("status", (e) => e.status, STATUSES),
  family: choiceField("family", (e) => (e.family === 6 ? "6" : "4"), {
    "4": "4",
    "6": "6",
    v4: "4",
    v6: "6",
    ipv4: "4",
    ipv6: "6",
    af_inet: "4",
    af_inet6: "6",
  }),
  direction: choiceField("direction", (e) => e.direction, { outbound: "outbound", inbound: "inbound" }),
};

function compileNode(n: Node): Predicate {
  switch (n.type) {
    case "or": {
      const items = n.items.map(compileNode);
      return (e) => items.some((p) => p(e));
    }
    case "and": {
      const items = n.items.map(compileNode);
      return (e) => items.every((p) => p(e));
    }
    case "cond": {
      const m = FILTER_FIELDS[n.field];
      if (!m) {
        fail(`unknown field '${n.field}' (known: ${Object.keys(FILTER_FIELDS).join(", ")})`, n.column);
      }
      const p = m(n.value, n.valueColumn);
      return n.op === "=" ? p : (e) => !p(e);
    }
  }
}

/**
 * Compile an expression; undefined when it is empty. Throws FilterSyntaxError.
 *
 * @example
 * ```ts
 * const p = compileFilter("dport=443 && dip=10.0.0.0/8");
 * ```
 */
export function compileFilter(src: string): Predicate | undefined {
  const node = parseFilter(src);
  return node ? compileNode(node) : undefined;
}

/**
 * Destination ports an -exclude expression drops whatever else an event says: its
 * top-level alternatives (`;` or `||`) that are a lone `dport=N`. The kernel can drop
 * these at connect() without changing what the predicate decides.
 *
 * @example
 * ```ts
 * kernelExcludedDports("dport=53; dip=10.0.0.1 && dport=80"); // [53]
 * ```
 */
export function kernelExcludedDports(exclude: string): number[] {
  const node = parseFilter(exclude);
  if (!node) return [];
  const alternatives = (n: Node): Node[] => (n.type === "or" ? n.items.flatMap(alternatives) : [n]);
  const ports = alternatives(node).flatMap((n) =>
    n.type === "cond" && n.field === "dport" && n.op === "=" && /^\d+$/.test(n.value) && Number(n.value) <= 65535
      ? [Number(n.value)]
      : []
  );
  return [...new Set(ports)];
}
