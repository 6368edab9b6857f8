/**
 * The baseline file: YAML a person reviews and edits, one flow per line, grouped
 * by workload and sorted, so that a pull request shows each new flow as one added
 * line. Reading it checks every line and names the line of the first mistake, as
 * config.yaml does. Learning merges new flows into the parsed document (comments
 * and hand-written rules stay) and replaces the file whole: a new file is written
 * beside it, exclusively, and renamed over it, so a crash or a full disk never
 * leaves half a baseline and a link at the path is replaced, never followed.
 * @module
 */
import {
  Document,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  Pair,
  parseDocument,
  type Scalar,
  YAMLMap,
  YAMLSeq,
} from "yaml";
import { UsageError } from "../usage_error.ts";
import { readTrustedText } from "../config/trusted_file.ts";
import { Baseline, parseRule, RuleError } from "./rules.ts";

/** The largest baseline read: 100,000 flows of 300 bytes. */
export const MAX_BASELINE_BYTES = 32 << 20;
/** The version key a baseline file starts with. */
export const VERSION_KEY = "lightmon-baseline";

const HEADER = ` lightmon baseline: the flows seen while learning (lightmon --learn), by workload:
 'pod NAMESPACE/OWNER', 'image IMAGE', 'container NAME' or 'host'. One flow per line:
   PROGRAM -> REMOTE:PORT      a connection this workload opened
   PROGRAM :PORT <- REMOTE     a connection it accepted on PORT
 Edit freely: PROGRAM and workloads may be globs ("*" for any), REMOTE a DNS name,
 a glob of names ("*.example.com"), an address or a CIDR, PORT a number, a range
 (8000-8099) or *. Quote a line that starts with * or [.`;

/** A baseline file read: its rules, and its document (for merging into). */
export interface BaselineFile {
  path: string;
  doc: Document;
  /** Flows (lines) it lists. */
  flows: number;
  /** Identity of the file read, to notice another writer before replacing it. */
  stamp: string;
}

/** What identifies a file's version: device, inode, size, modification time. */
function stampOf(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtime?.getTime()}`;
}

/**
 * Parse baseline text into `into`'s rules; `file` names it in errors (UsageError
 * with the line). Returns the document and the number of flows.
 */
export function parseBaseline(text: string, file: string, into: Baseline): { doc: Document; flows: number } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const lineOf = (node: unknown) => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range ? lc.linePos(range[0]).line : 1;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const msg = e.message.split("\n")[0].replace(/\.$/, "");
    const hint = /alias/i.test(msg) ? " (quote a line or key that starts with *)" : "";
    throw new UsageError(`${file}:${lc.linePos(e.pos[0]).line}: invalid YAML: ${msg}${hint}`);
  }
  if (doc.contents === null) return { doc, flows: 0 };
  if (!isMap(doc.contents)) {
    throw new UsageError(`${file}:1: expected a mapping with '${VERSION_KEY}: 1' and 'workloads'`);
  }
  let flows = 0;
  for (const item of doc.contents.items) {
    const key = isScalar(item.key) ? String(item.key.value) : "";
    const where = `${file}:${lineOf(item.key)}`;
    if (key === VERSION_KEY) {
      const v = isScalar(item.value) ? item.value.value : undefined;
      if (v !== 1) {
        throw new UsageError(`${where}: ${VERSION_KEY} is ${JSON.stringify(v)}; this lightmon reads version 1`);
      }
    } else if (key === "workloads") {
      if (item.value === null || (isScalar(item.value) && item.value.value === null)) continue;
      if (!isMap(item.value)) {
        throw new UsageError(`${where}: workloads: expected a mapping of workloads to flow lists`);
      }
      for (const w of item.value.items) flows += addWorkload(w, file, lineOf, into);
    } else {
      throw new UsageError(`${where}: unknown key '${key}'; known keys: ${VERSION_KEY}, workloads`);
    }
  }
  return { doc, flows };
}

function addWorkload(
  pair: Pair<unknown, unknown>,
  file: string,
  lineOf: (node: unknown) => number,
  into: Baseline,
): number {
  const name = isScalar(pair.key) && typeof pair.key.value === "string" ? pair.key.value.trim() : "";
  if (name === "") throw new UsageError(`${file}:${lineOf(pair.key)}: a workload is a name ('host', 'image busybox')`);
  const value = pair.value;
  if (value === null || (isScalar(value) && value.value === null)) return 0;
  if (!isSeq(value)) throw new UsageError(`${file}:${lineOf(pair.key)}: ${name}: expected a list of flow lines`);
  for (const item of value.items) {
    const line = lineOf(item);
    if (!isScalar(item) || typeof item.value !== "string") {
      throw new UsageError(
        `${file}:${line}: expected a flow line ('PROGRAM -> REMOTE:PORT'), got ${typeof (isScalar(item)
          ? item.value
          : item)}`,
      );
    }
    try {
      into.add(name, parseRule(item.value));
    } catch (e) {
      if (e instanceof RuleError) throw new UsageError(`${file}:${line}: ${e.message}: '${item.value}'`);
      throw e;
    }
  }
  return value.items.length;
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
  const { doc, flows } = parseBaseline(text, path, into);
  return { path, doc, flows, stamp };
}

/** A new, empty baseline document with the header that explains the format. */
export function newDocument(): Document {
  const doc = new Document({ [VERSION_KEY]: 1, workloads: {} });
  doc.commentBefore = HEADER;
  return doc;
}

/** Merge flows (workload to lines) into a document: each workload's list sorted, workloads sorted. */
export function mergeFlows(doc: Document, flows: ReadonlyMap<string, readonly string[]>): void {
  if (!isMap(doc.contents)) doc.contents = doc.createNode({ [VERSION_KEY]: 1, workloads: {} }) as never;
  const root = doc.contents as YAMLMap;
  const found: unknown = root.get("workloads", true);
  let map: YAMLMap;
  if (isMap(found)) map = found;
  else {
    map = new YAMLMap();
    root.set("workloads", map);
  }
  for (const [w, lines] of flows) {
    let pair = map.items.find((p) => isScalar(p.key) && p.key.value === w);
    if (!pair) {
      pair = new Pair(doc.createNode(w), new YAMLSeq());
      map.items.push(pair);
    }
    if (!isSeq(pair.value)) pair.value = new YAMLSeq();
    const seq = pair.value as YAMLSeq;
    const there = new Set(seq.items.map(text));
    for (const l of lines) if (!there.has(l)) seq.items.push(doc.createNode(l));
    seq.items.sort((a, b) => compare(text(a), text(b)));
  }
  map.items.sort((a, b) => compare(text(a.key), text(b.key)));
}

const text = (n: unknown) => (isScalar(n) ? String((n as Scalar).value) : "");
const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The document as the file's text: no folding, so that one flow stays one line. */
export function documentText(doc: Document): string {
  return doc.toString({ lineWidth: 0 });
}

/**
 * Replace `path` with `text`, whole: written to a new file beside it (created
 * exclusively, so never through a link), flushed, given `mode` and `owner`, then
 * renamed over the path.
 */
export function replaceFile(path: string, text: string, mode: number, owner?: { uid: number; gid: number }): void {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  const tmp = `${dir}/.${path.slice(slash + 1)}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const data = new TextEncoder().encode(text);
  const f = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    try {
      let n = 0;
      while (n < data.length) n += f.writeSync(data.subarray(n));
      f.syncSync();
    } finally {
      f.close();
    }
    if (owner) Deno.chownSync(tmp, owner.uid, owner.gid);
    Deno.chmodSync(tmp, mode);
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* already renamed or gone */ }
    throw e;
  }
}

/** The stamp of the file at `path` now, or "" when there is none. */
export function currentStamp(path: string): string {
  try {
    return stampOf(Deno.lstatSync(path));
  } catch {
    return "";
  }
}
