/**
 * Filter expressions compiled once, at start-up, into a predicate over events.
 * The registry (fields.ts) says which fields there are and of which kind; this
 * file says how each kind parses its value and matches.
 * @module
 */
import ipaddr from "ipaddr.js";
import type { ConnEvent } from "../event.ts";
import { FILTER_FIELDS, type FilterField } from "../fields.ts";
import { type Comparison, FilterSyntaxError, type Node, parseFilter } from "./parse.ts";

/** A compiled filter. */
export type Predicate = (e: ConnEvent) => boolean;

type Matcher = (value: string, column: number) => Predicate;
/** A number field's matcher for `<`, `<=`, `>`, `>=`. */
type Comparer = (value: string, column: number, op: Comparison) => Predicate;

const fail = (msg: string, column: number): never => {
  throw new FilterSyntaxError(msg, column);
};

function wholeNumber(name: string, v: string, col: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) > max) fail(`${name} needs a whole number up to ${max}, not '${v}'`, col);
  return Number(v);
}

function intField(name: string, get: (e: ConnEvent) => number, max: number): Matcher {
  return (v, col) => {
    const n = wholeNumber(name, v, col, max);
    return (e) => get(e) === n;
  };
}

function intComparer(name: string, get: (e: ConnEvent) => number, max: number): Comparer {
  return (v, col, op) => {
    const n = wholeNumber(name, v, col, max);
    switch (op) {
      case "<":
        return (e) => get(e) < n;
      case "<=":
        return (e) => get(e) <= n;
      case ">":
        return (e) => get(e) > n;
      case ">=":
        return (e) => get(e) >= n;
    }
  };
}

/**
 * A glob with `*` as its only wildcard, matched without backtracking: the first
 * and last literal runs anchor the ends, the ones between are found left to right
 * (the leftmost place is always as good as any later one). Time is linear in the
 * subject for a given pattern, whatever a process names itself.
 */
export function globMatcher(pattern: string): (s: string) => boolean {
  const parts = pattern.split("*");
  if (parts.length === 1) return (s) => s === pattern;
  const head = parts[0];
  const tail = parts[parts.length - 1];
  const middle = parts.slice(1, -1).filter((p) => p !== "");
  const least = head.length + tail.length + middle.reduce((n, p) => n + p.length, 0);
  return (s) => {
    if (s.length < least || !s.startsWith(head) || !s.endsWith(tail)) return false;
    let at = head.length;
    const end = s.length - tail.length;
    for (const p of middle) {
      const found = s.indexOf(p, at);
      if (found < 0 || found + p.length > end) return false;
      at = found + p.length;
    }
    return true;
  };
}

/** Exact match, or a glob when the value contains '*'. */
function textField(get: (e: ConnEvent) => string): Matcher {
  return (v) => {
    const match = globMatcher(v);
    return (e) => match(get(e));
  };
}

function substringField(gets: readonly ((e: ConnEvent) => string)[]): Matcher {
  if (gets.length === 1) {
    const get = gets[0];
    return (v) => (e) => get(e).includes(v);
  }
  return (v) => (e) => gets.some((get) => get(e).includes(v));
}

function choiceField(
  name: string,
  get: (e: ConnEvent) => string,
  choices: ReadonlyMap<string, string>,
  has?: (e: ConnEvent, value: string) => boolean,
): Matcher {
  return (v, col) => {
    const want = choices.get(v.toLowerCase());
    if (want === undefined) fail(`${name} is one of ${[...choices.keys()].join(", ")}, not '${v}'`, col);
    return has ? (e) => has(e, want!) : (e) => get(e) === want;
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

/**
 * A matcher of address texts for an IP or CIDR, v4 or v6 (v4-mapped IPv6 values
 * mean their IPv4 address); undefined when `v` is neither.
 *
 * @example
 * ```ts
 * addressMatcher("10.0.0.0/8")?.("10.1.2.3"); // true
 * ```
 */
export function addressMatcher(v: string): ((addr: string) => boolean) | undefined {
  let range: [Parsed, number];
  try {
    range = v.includes("/") ? ipaddr.parseCIDR(v) : (() => {
      const a = ipaddr.parse(v);
      return [a, a.kind() === "ipv4" ? 32 : 128] as [Parsed, number];
    })();
  } catch {
    return undefined;
  }
  let [net, bits] = range;
  if (net.kind() === "ipv6" && (net as ipaddr.IPv6).isIPv4MappedAddress()) {
    net = (net as ipaddr.IPv6).toIPv4Address();
    bits = Math.max(0, bits - 96);
  }
  const kind = net.kind();
  return (addr) => {
    const a = parsedAddress(addr);
    return a.kind() === kind && a.match(net, bits);
  };
}

/** An IP or CIDR field. */
function ipField(name: string, get: (e: ConnEvent) => string): Matcher {
  return (v, col) => {
    const match = addressMatcher(v) ?? fail(`${name} needs an IP address or CIDR, not '${v}'`, col);
    return (e) => match(get(e));
  };
}

/** The matcher for one of the registry's filter fields. */
function matcherFor({ name, spec, field }: FilterField): Matcher {
  const asString = (e: ConnEvent) => field.get(e) as string;
  switch (spec.kind) {
    case "number":
      return intField(name, spec.get ?? ((e) => field.get(e) as number), spec.max);
    case "address":
      return ipField(name, spec.get ?? asString);
    case "text":
      return textField(spec.get ?? asString);
    case "substring":
      return substringField(spec.anyOf ?? [asString]);
    case "choice":
      return choiceField(name, spec.get ?? asString, new Map(Object.entries(spec.values)), spec.has);
  }
}

/** The filterable fields, by name, from the registry. */
const MATCHERS: ReadonlyMap<string, Matcher> = new Map(
  [...FILTER_FIELDS.values()].map((f) => [f.name, matcherFor(f)]),
);

/** The number fields' comparisons, by name. */
const COMPARERS: ReadonlyMap<string, Comparer> = new Map(
  [...FILTER_FIELDS.values()].flatMap(({ name, spec, field }) =>
    spec.kind === "number" ? [[name, intComparer(name, spec.get ?? ((e) => field.get(e) as number), spec.max)]] : []
  ),
);

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
      const m = MATCHERS.get(n.field);
      if (!m) return fail(`unknown field '${n.field}' (known: ${[...MATCHERS.keys()].join(", ")})`, n.column);
      if (n.op !== "=" && n.op !== "!=") {
        const c = COMPARERS.get(n.field);
        if (!c) return fail(`'${n.op}' compares numbers, and ${n.field} is not a number`, n.opColumn);
        return c(n.value, n.valueColumn, n.op);
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
