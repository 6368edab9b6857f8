/**
 * The parts of -exclude and -include the kernel applies: parsed only, without the
 * predicate's compiler (and its address library), so that main.ts knows them
 * before the load.
 * @module
 */
import { FilterSyntaxError, type Node, parseFilter } from "./parse.ts";

/** The expression's tree, or undefined when empty or wrong (keepPredicate reports that, as a usage error). */
function parsed(text: string): Node | undefined {
  try {
    return parseFilter(text);
  } catch (e) {
    if (e instanceof FilterSyntaxError) return undefined;
    throw e;
  }
}

/** Top-level alternatives (`;` or `||`). */
const alternatives = (n: Node): Node[] => (n.type === "or" ? n.items.flatMap(alternatives) : [n]);

/** The port a `field=N` condition names, or undefined. */
function portOf(n: Node, fields: readonly string[]): number | undefined {
  return n.type === "cond" && fields.includes(n.field) && n.op === "=" && /^\d+$/.test(n.value) &&
      Number(n.value) <= 65535
    ? Number(n.value)
    : undefined;
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
  const node = parsed(exclude);
  if (!node) return [];
  const ports = alternatives(node).flatMap((n) => portOf(n, ["dport"]) ?? []);
  return [...new Set(ports)];
}

/** Port fields by side: the peer's, and this host's. */
const REMOTE = ["dport", "rport"] as const;
const LOCAL = ["sport", "lport"] as const;

/**
 * The ports an -include keeps, when it is made only of port alternatives
 * (`rport=443 || lport=22; dport=53`): a connection whose ports are none of them
 * fails every alternative, whatever else it says, so the kernel need not track it
 * or send any of its records. Anything else in the expression (`&&`, another field,
 * a `!=`) and the whole include stays in user space: undefined.
 *
 * @example
 * ```ts
 * kernelIncludedPorts("rport=443 || lport=22"); // { remote: [443], local: [22] }
 * kernelIncludedPorts("rport=443 || comm=curl"); // undefined
 * ```
 */
export function kernelIncludedPorts(include: string): { remote: number[]; local: number[] } | undefined {
  const node = parsed(include);
  if (!node) return undefined;
  const remote = new Set<number>();
  const local = new Set<number>();
  for (const n of alternatives(node)) {
    const r = portOf(n, REMOTE);
    const l = portOf(n, LOCAL);
    if (r !== undefined) remote.add(r);
    else if (l !== undefined) local.add(l);
    else return undefined;
  }
  return { remote: [...remote], local: [...local] };
}
