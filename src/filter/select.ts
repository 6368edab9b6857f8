/**
 * -include and -exclude together, compiled once at start-up.
 * @module
 */
import { UsageError } from "../usage_error.ts";
import type { Options } from "../cli/options.ts";
import { compileFilter, type Predicate } from "./compile.ts";
import { FilterSyntaxError } from "./parse.ts";

function compileFlag(flag: string, expr: string): Predicate | undefined {
  try {
    return compileFilter(expr);
  } catch (e) {
    if (e instanceof FilterSyntaxError) throw new UsageError(`${flag}: ${e.message}`);
    throw e;
  }
}

/** The keep-predicate for -include and -exclude: include first, then exclude. */
export function keepPredicate(o: Pick<Options, "include" | "exclude">): Predicate {
  const inc = compileFlag("-include", o.include);
  const exc = compileFlag("-exclude", o.exclude);
  if (inc && exc) return (e) => inc(e) && !exc(e);
  if (inc) return inc;
  if (exc) return (e) => !exc(e);
  return () => true;
}
