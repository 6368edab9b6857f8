/**
 * The part of -exclude the kernel applies: parsed only, without the predicate's
 * compiler (and its address library), so that main.ts knows it before the load.
 * @module
 */
import { FilterSyntaxError, type Node, parseFilter } from "./parse.ts";

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
  let node: Node | undefined;
  try {
    node = parseFilter(exclude);
  } catch (e) {
    // Not this function's to report: keepPredicate says what is wrong, as a usage error.
    if (e instanceof FilterSyntaxError) return [];
    throw e;
  }
  if (!node) return [];
  const alternatives = (n: Node): Node[] => (n.type === "or" ? n.items.flatMap(alternatives) : [n]);
  const ports = alternatives(node).flatMap((n) =>
    n.type === "cond" && n.field === "dport" && n.op === "=" && /^\d+$/.test(n.value) && Number(n.value) <= 65535
      ? [Number(n.value)]
      : []
  );
  return [...new Set(ports)];
}
