/**
 * Reading the baseline file: YAML a person reviews and edits, one flow per line,
 * grouped by workload (merge.ts writes it). It is parsed with js-yaml, which reads
 * 10,000 flows in a tenth of the time the comment-keeping parser takes; every line
 * is checked, and the first mistake is named with its line, as config.yaml's are
 * (the line of a well-formed but wrong value is found with the comment-keeping
 * parser, only then).
 * @module
 */
import { CORE_SCHEMA, load, YAMLException } from "js-yaml";
import { UsageError } from "../usage_error.ts";
import { readTrustedText } from "../config/trusted_file.ts";
import { type Baseline, parseRule, type Rule, RuleError } from "./rules.ts";

/** Where parsed rules go: a Baseline, or a merge that wants each line as written too. */
export interface RuleSink {
  add(workload: string, rule: Rule, line: string): void;
}

/** The largest baseline read: 100,000 flows of 300 bytes. */
export const MAX_BASELINE_BYTES = 32 << 20;
/** The version key a baseline file starts with. */
export const VERSION_KEY = "lightmon-baseline";

/** A baseline file read. */
export interface BaselineFile {
  path: string;
  /** Its text (learning merges into it). */
  text: string;
  /** Flows (lines) it lists. */
  flows: number;
  /** Identity of the file read, to notice another writer before replacing it. */
  stamp: string;
}

/** What identifies a file's version: device, inode, size, modification time. */
function stampOf(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtime?.getTime()}`;
}

/** A place in the document: keys and list indexes from the top. */
type Path = readonly (string | number)[];

/** A mistake in a well-formed file, and where it is. */
class Misplaced extends Error {
  constructor(readonly path: Path, message: string) {
    super(message);
  }
}

/**
 * Parse baseline text into `into`'s rules; `file` names it in errors (UsageError
 * with the line). Returns the number of flows.
 */
export async function parseBaseline(text: string, file: string, into: RuleSink): Promise<number> {
  let data: unknown;
  try {
    // No aliases: a baseline has no use for them, and a few KB of them expand to gigabytes.
    data = load(text, { schema: CORE_SCHEMA, filename: file, maxAliases: 0 });
  } catch (e) {
    if (!(e instanceof YAMLException)) throw e;
    // Nothing but comments, or nothing at all: a baseline with no flows.
    if (/input is empty/.test(e.reason ?? "")) return 0;
    const reason = e.reason ?? e.message.split("\n")[0];
    const hint = /alias/i.test(reason)
      ? " (a baseline takes no YAML aliases or anchors: quote a line or key that starts with * or &)"
      : "";
    throw new UsageError(`${file}:${(e.mark?.line ?? 0) + 1}: invalid YAML: ${reason}${hint}`);
  }
  try {
    return addAll(data, into);
  } catch (e) {
    if (!(e instanceof Misplaced)) throw e;
    throw new UsageError(`${file}:${await lineOf(text, e.path)}: ${e.message}`);
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function addAll(data: unknown, into: RuleSink): number {
  if (data === null || data === undefined) return 0;
  if (!isRecord(data)) throw new Misplaced([], `expected a mapping with '${VERSION_KEY}: 1' and 'workloads'`);
  let flows = 0;
  // Own keys only: user text never reaches a prototype.
  for (const [key, value] of Object.entries(data)) {
    if (key === VERSION_KEY) {
      if (value !== 1) {
        throw new Misplaced([key], `${VERSION_KEY} is ${JSON.stringify(value)}; this lightmon reads version 1`);
      }
    } else if (key === "workloads") {
      if (value === null) continue;
      if (!isRecord(value)) throw new Misplaced([key], "workloads: expected a mapping of workloads to flow lists");
      for (const [name, lines] of Object.entries(value)) flows += addWorkload(name, lines, into);
    } else {
      throw new Misplaced([key], `unknown key '${key}'; known keys: ${VERSION_KEY}, workloads`);
    }
  }
  return flows;
}

function addWorkload(name: string, lines: unknown, into: RuleSink): number {
  const at = ["workloads", name];
  const workload = name.trim();
  if (workload === "") throw new Misplaced(at, "a workload is a name ('host', 'image busybox')");
  if (lines === null) return 0;
  if (!Array.isArray(lines)) throw new Misplaced(at, `${workload}: expected a list of flow lines`);
  lines.forEach((line: unknown, i) => {
    if (typeof line !== "string") {
      throw new Misplaced(
        [...at, i],
        `expected a flow line ('PROGRAM -> REMOTE:PORT'), got ${line === null ? "nothing" : typeof line}`,
      );
    }
    try {
      into.add(workload, parseRule(line), line.trim());
    } catch (e) {
      if (e instanceof RuleError) throw new Misplaced([...at, i], `${e.message}: '${line}'`);
      throw e;
    }
  });
  return lines.length;
}

/** The line of the value (list items) or key (mappings) at `path`, found with the comment-keeping parser. */
async function lineOf(text: string, path: Path): Promise<number> {
  const { isMap, isScalar, isSeq, LineCounter, parseDocument } = await import("yaml");
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  let node: unknown = doc.contents;
  let at: number | undefined = 0;
  for (const step of path) {
    if (typeof step === "number" && isSeq(node)) {
      node = node.items[step];
      at = (node as { range?: number[] })?.range?.[0];
    } else if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === step);
      at = (pair?.key as { range?: number[] } | undefined)?.range?.[0];
      node = pair?.value;
    } else break;
  }
  return lc.linePos(at ?? 0).line;
}

/** Read and parse a baseline file into `into`; undefined when it does not exist and `mayBeMissing`. */
export async function loadBaseline(
  path: string,
  into: Baseline,
  flag: string,
  mayBeMissing: boolean,
): Promise<BaselineFile | undefined> {
  let text: string;
  let stamp: string;
  try {
    text = await readTrustedText(path, { what: "baseline", maxBytes: MAX_BASELINE_BYTES });
    stamp = stampOf(Deno.lstatSync(path));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (e instanceof Deno.errors.NotFound && mayBeMissing) return undefined;
    const why = e instanceof Deno.errors.NotFound ? "no such file" : e instanceof Error ? e.message : String(e);
    throw new UsageError(`${flag} ${path}: cannot read the baseline (${why})`);
  }
  const flows = await parseBaseline(text, path, into);
  return { path, text, flows, stamp };
}

/** The stamp of the file at `path` now, or "" when there is none. */
export function currentStamp(path: string): string {
  try {
    return stampOf(Deno.lstatSync(path));
  } catch {
    return "";
  }
}
