/**
 * -include and -exclude together, compiled once at start-up, and the pipeline
 * stage that applies them.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
import { UsageError } from "../usage_error.ts";
import { compileFilter, type Predicate } from "./compile.ts";
import { FilterSyntaxError, type Node, parseFilter } from "./parse.ts";

/** The two filter expressions, as the user wrote them. */
export interface Selection {
  include: string;
  exclude: string;
}

function compileFlag(flag: string, expr: string): Predicate | undefined {
  try {
    return compileFilter(expr);
  } catch (e) {
    if (e instanceof FilterSyntaxError) throw new UsageError(`${flag}: ${e.message}`);
    throw e;
  }
}

/** The keep-predicate for -include and -exclude: include first, then exclude. */
export function keepPredicate(o: Selection): Predicate {
  const inc = compileFlag("-include", o.include);
  const exc = compileFlag("-exclude", o.exclude);
  if (inc && exc) return (e) => inc(e) && !exc(e);
  if (inc) return inc;
  if (exc) return (e) => !exc(e);
  return () => true;
}

/** Whether an expression (valid: keepPredicate compiled it) has a condition on the field `name`. */
export function mentionsField(expr: string, name: string): boolean {
  const walk = (n: Node): boolean => (n.type === "cond" ? n.field === name : n.items.some(walk));
  const node = parseFilter(expr);
  return node !== undefined && walk(node);
}

/** The stage that drops what the user filtered out. */
export class FilterStage extends Stage<ConnEvent> {
  readonly name = "filter";
  #keep: Predicate;
  #filtered = 0;

  constructor(keep: Predicate) {
    super();
    this.#keep = keep;
  }

  push(e: ConnEvent): void {
    if (this.#keep(e)) this.emit(e);
    else this.#filtered++;
  }

  override counters(): Counters {
    return { filtered: this.#filtered };
  }
}
