/**
 * The event's fields, in output order: JSON keys and their encodings come from
 * this one table, so adding a field is one edit.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { jsonString } from "./sanitize.ts";
import { rfc3339Nano } from "./time.ts";

type Encoder = (e: ConnEvent) => string;

const str = (get: (e: ConnEvent) => string): Encoder => (e) => jsonString(get(e));
const num = (get: (e: ConnEvent) => number): Encoder => (e) => String(get(e));
const bigStr = (get: (e: ConnEvent) => bigint): Encoder => (e) => `"${get(e)}"`;

/** Each JSON key with its encoder, in output order. */
export const JSON_FIELDS: ReadonlyArray<readonly [string, Encoder]> = [
  ["kernelTime", bigStr((e) => e.kernelTime)],
  ["time", (e) => `"${rfc3339Nano(e.wallNs)}"`],
  ["pid", num((e) => e.pid)],
  ["tid", num((e) => e.tid)],
  ["ppid", num((e) => e.ppid)],
  ["uid", num((e) => e.uid)],
  ["gid", num((e) => e.gid)],
  ["user", str((e) => e.user)],
  ["comm", str((e) => e.comm)],
  ["exe", str((e) => e.exe)],
  ["args", (e) => `[${e.args.map(jsonString).join(",")}]`],
  ["procSource", str((e) => e.procSource)],
  ["addressFamily", (e) => (e.family === 6 ? '"AF_INET6"' : '"AF_INET"')],
  ["saddr", str((e) => e.saddr)],
  ["sport", num((e) => e.sport)],
  ["daddr", str((e) => e.daddr)],
  ["dport", num((e) => e.dport)],
  ["protocol", () => '"tcp"'],
  ["direction", str((e) => e.direction)],
  ["status", str((e) => e.status)],
  ["latencyUs", num((e) => e.latencyUs)],
  ["container", str((e) => e.container)],
  ["containerId", str((e) => e.containerId)],
  ["image", str((e) => e.image)],
  ["pod", str((e) => e.pod)],
  ["namespace", str((e) => e.namespace)],
  ["cgroupId", bigStr((e) => e.cgroupId)],
  ["mntns", num((e) => e.mntns)],
  ["netns", num((e) => e.netns)],
];

const PREFIXES = JSON_FIELDS.map(([k], i) => `${i === 0 ? "{" : ","}${JSON.stringify(k)}:`);

/** One event as one line of JSON (no newline). */
export function toJson(e: ConnEvent): string {
  let out = "";
  for (let i = 0; i < JSON_FIELDS.length; i++) out += PREFIXES[i] + JSON_FIELDS[i][1](e);
  return out + "}";
}
