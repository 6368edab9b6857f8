/**
 * config.yaml: the original tool's keys (ipv6, k8s, format, logPath,
 * docker_runtime, docker_data, exclude, ebpfType) plus a few of ours. An unknown
 * key, a wrong type or invalid YAML is a UsageError naming the key and the line.
 * @module
 */
import { isMap, isScalar, LineCounter, parseDocument } from "yaml";
import { UsageError } from "../usage_error.ts";
import { CONFIG_KEYS, type Options } from "../cli/options.ts";

/** Parse config text into the options it sets. `file` names it in errors. */
export function parseConfig(text: string, file: string): Partial<Options> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined) => (offset === undefined ? 0 : lc.linePos(offset).line);
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new UsageError(`${file}:${lineOf(e.pos[0])}: invalid YAML: ${e.message.split("\n")[0].replace(/\.$/, "")}`);
  }
  if (doc.contents === null) return {};
  if (!isMap(doc.contents)) throw new UsageError(`${file}:1: expected a mapping of keys to values`);
  const out: Record<string, unknown> = {};
  for (const item of doc.contents.items) {
    const keyNode = item.key;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const line = lineOf(isScalar(keyNode) ? keyNode.range?.[0] : undefined);
    const flag = CONFIG_KEYS.get(key);
    if (!flag) {
      throw new UsageError(`${file}:${line}: unknown key '${key}'; known keys: ${[...CONFIG_KEYS.keys()].join(", ")}`);
    }
    const value = isScalar(item.value) ? item.value.value : item.value === null ? null : undefined;
    if (value === null) continue; // `key:` with no value keeps the default
    const where = `${file}:${line}: ${key}`;
    if (flag.kind === "boolean") {
      if (typeof value !== "boolean") throw new UsageError(`${where}: expected true or false, got ${show(value)}`);
      out[flag.key] = value;
    } else {
      if (typeof value !== "string" && typeof value !== "number") {
        throw new UsageError(`${where}: expected a string or number, got ${show(value)}`);
      }
      try {
        out[flag.key] = flag.convert ? flag.convert(String(value), key) : String(value);
      } catch (e) {
        throw new UsageError(`${file}:${line}: ${e instanceof Error ? e.message : e}`);
      }
    }
  }
  return out as Partial<Options>;
}

function show(v: unknown): string {
  if (v === undefined) return "a list or mapping";
  return JSON.stringify(v);
}
