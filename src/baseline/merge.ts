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
import fs from "node:fs";
import { VERSION_KEY } from "./file.ts";
import { dirOf, untrustedDirBecause } from "../config/trusted_file.ts";

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

/** Test seam: runs between writing the new file and renaming it over the path. */
export interface ReplaceHooks {
  beforeRename?: (tmp: string) => void;
}

/**
 * Replace `path` with `text`, whole: written to a new file beside it (created
 * exclusively and never through a link), flushed, given `mode` and `owner` on the
 * open descriptor (never by path: the directory's owner could have put a link at
 * the temporary name by then), then renamed over the path. The directory must be
 * one lightmon may keep files in (see untrustedDirBecause).
 */
export function replaceFile(
  path: string,
  text: string,
  mode: number,
  owner?: { uid: number; gid: number },
  hooks: ReplaceHooks = {},
): void {
  const dir = dirOf(path);
  const why = untrustedDirBecause(dir);
  if (why) throw new Error(`refusing to write ${path}: its directory ${dir}: ${why}`);
  const tmp = `${dir}/.${path.slice(path.lastIndexOf("/") + 1)}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const data = new TextEncoder().encode(text);
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  const ino = fs.fstatSync(fd).ino;
  try {
    try {
      let n = 0;
      while (n < data.length) n += fs.writeSync(fd, data, n);
      if (owner) fs.fchownSync(fd, owner.uid, owner.gid);
      fs.fchmodSync(fd, mode);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    hooks.beforeRename?.(tmp);
    const now = Deno.lstatSync(tmp);
    if (now.ino !== ino || !now.isFile) {
      throw new Error(`refusing to write ${path}: ${tmp} was replaced by someone else`);
    }
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      // Only if it is still ours: the name may be someone else's by now.
      if (Deno.lstatSync(tmp).ino === ino) Deno.removeSync(tmp);
    } catch { /* already renamed or gone */ }
    throw e;
  }
}
