/**
 * Writing the baseline file: learned flows are merged into the parsed document
 * (comments and hand-written rules stay), each workload's list sorted and the
 * workloads sorted, so that a pull request shows each new flow as one added line;
 * then the file is replaced whole: a new file is written beside it, exclusively,
 * and renamed over it, so a crash or a full disk never leaves half a baseline, and
 * a link at the path is replaced, never followed. Loaded only when a run learns.
 * @module
 */
import { Document, isMap, isScalar, isSeq, Pair, parseDocument, type Scalar, YAMLMap, YAMLSeq } from "yaml";
import { VERSION_KEY } from "./file.ts";

const HEADER = ` lightmon baseline: the flows seen while learning (lightmon --learn), by workload:
 'pod NAMESPACE/OWNER', 'image IMAGE', 'container NAME' or 'host'. One flow per line:
   PROGRAM -> REMOTE:PORT      a connection this workload opened
   PROGRAM :PORT <- REMOTE     a connection it accepted on PORT
 Edit freely: PROGRAM and workloads may be globs ("*" for any), REMOTE a DNS name,
 a glob of names ("*.example.com"), an address or a CIDR, PORT a number, a range
 (8000-8099) or *. Quote a line that starts with * or [.`;

/** The document of a baseline's text, to merge into; a new one (with the header that explains the format) for "". */
export function documentOf(text: string): Document {
  return text.trim() === "" ? newDocument() : parseDocument(text);
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
