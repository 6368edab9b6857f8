/**
 * Reading OTLP requests in tests: the official OTLP protobuf definitions, as
 * OpenTelemetry's JS project compiled them (protobufjs, the npm package
 * otlp-proto-decoder: @opentelemetry/otlp-transformer 0.203, the last release that
 * shipped them), and decoded values as the plain values lightmon meant.
 * @module
 */
import { createRequire } from "node:module";
import type { OtelValue } from "../fields.ts";

const require = createRequire(import.meta.url);
const root = require("otlp-proto-decoder/build/src/generated/root.js");
/** ExportLogsServiceRequest: `decode(bytes)`, `toObject(message, options)`. */
export const LOGS_REQUEST = root.opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest;

/** A decoded AnyValue (toObject with longs as numbers) as the value lightmon meant. */
// deno-lint-ignore no-explicit-any
export function plainValue(v: any): OtelValue {
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("boolValue" in v) return v.boolValue;
  if ("doubleValue" in v) return v.doubleValue;
  if ("arrayValue" in v) return (v.arrayValue.values ?? []).map(plainValue);
  if ("kvlistValue" in v) {
    return Object.fromEntries((v.kvlistValue.values ?? []).map((kv: { key: string; value: unknown }) => [
      kv.key,
      plainValue(kv.value),
    ]));
  }
  throw new Error(`no value in ${JSON.stringify(v)}`);
}

/** A decoded KeyValue list as an object. */
// deno-lint-ignore no-explicit-any
export const plainAttributes = (kvs: any[] = []) => Object.fromEntries(kvs.map((kv) => [kv.key, plainValue(kv.value)]));
