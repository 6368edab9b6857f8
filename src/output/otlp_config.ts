/**
 * `--output otlp`'s settings, as the OpenTelemetry exporter specification names them,
 * so that a fleet's existing environment applies unchanged: the `OTEL_EXPORTER_OTLP_*`
 * variables (the logs-specific one over the general one), `OTEL_RESOURCE_ATTRIBUTES`,
 * `OTEL_SERVICE_NAME` and the batch processor's `OTEL_BLRP_*`. The flag
 * (`--otlp-endpoint`) is over both. A value that cannot be used is a UsageError
 * naming the variable.
 * @module
 */
import { UsageError } from "../usage_error.ts";
import { VERSION } from "../version.ts";

/** The wire formats of OTLP/HTTP. */
export type OtlpProtocol = "http/protobuf" | "http/json";

/** Everything the exporter needs. */
export interface OtlpConfig {
  /** The logs URL requests are POSTed to. */
  url: string;
  protocol: OtlpProtocol;
  /** Extra request headers (auth tokens), already percent-decoded. */
  headers: Readonly<Record<string, string>>;
  gzip: boolean;
  /** One request's timeout, ms. */
  timeoutMs: number;
  /** PEM file of the CA(s) an https collector's certificate is checked against, or "". */
  certificate: string;
  /** PEM files of a client certificate and its key, for collectors that ask for one, or "". */
  clientCertificate: string;
  clientKey: string;
  /** Resource attributes: service.name, service.version, host.name, and OTEL_RESOURCE_ATTRIBUTES'. */
  resource: Readonly<Record<string, string>>;
  /** Records per request at most. */
  maxBatch: number;
  /** A batch goes out this long after its first record at the latest, ms. */
  batchDelayMs: number;
  /** Records waiting (batched or queued) at most; what comes past it is dropped and counted. */
  maxQueue: number;
}

/** Where an OTLP/HTTP collector listens by default. */
export const DEFAULT_ENDPOINT = "http://localhost:4318";
/** The logs path under a base endpoint. */
const LOGS_PATH = "v1/logs";
/** The specification's defaults: 10 s a request, 512 records a batch, 1 s at most before it goes. */
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_BATCH = 512;
const DEFAULT_DELAY_MS = 1000;
/**
 * Larger than the specification's 2048: a collector restarting for a minute at 100
 * connections a second loses nothing (about 40 MB at most, encoded).
 */
export const DEFAULT_QUEUE = 100_000;

type Env = Readonly<Record<string, string | undefined>>;

/** The logs-specific variable over the general one (`OTEL_EXPORTER_OTLP_LOGS_X` over `OTEL_EXPORTER_OTLP_X`). */
function pick(env: Env, what: string): { name: string; value: string } | undefined {
  for (const name of [`OTEL_EXPORTER_OTLP_LOGS_${what}`, `OTEL_EXPORTER_OTLP_${what}`]) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

/**
 * The logs URL of an endpoint: a base (`http://collector:4318`) gets `/v1/logs`, as
 * OTEL_EXPORTER_OTLP_ENDPOINT does; a URL that already ends so is used as it is.
 */
export function logsUrl(endpoint: string, what: string, isSignalUrl = false): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new UsageError(`${what}: '${endpoint}' is not a URL; give one like http://collector:4318`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new UsageError(
      `${what}: '${endpoint}' is not http or https; lightmon speaks OTLP/HTTP (port 4318), not gRPC`,
    );
  }
  if (isSignalUrl || u.pathname.endsWith(`/${LOGS_PATH}`)) return u.href;
  u.pathname = `${u.pathname.replace(/\/+$/, "")}/${LOGS_PATH}`;
  return u.href;
}

/**
 * `key1=value1,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES),
 * values percent-decoded. A pair without `=` or with an empty key is an error: a
 * typo must not silently drop an auth header.
 */
export function parsePairs(text: string, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of text.split(",")) {
    if (item.trim() === "") continue;
    const eq = item.indexOf("=");
    const key = eq < 0 ? "" : item.slice(0, eq).trim();
    if (key === "") throw new UsageError(`${name}: '${item.trim()}' is not key=value`);
    let value: string;
    try {
      value = decodeURIComponent(item.slice(eq + 1).trim());
    } catch {
      throw new UsageError(`${name}: the value of '${key}' is not percent-encoded text`);
    }
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function positive(env: Env, name: string, fallback: number, max: number): number {
  const text = env[name]?.trim();
  if (!text) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new UsageError(`${name}: '${text}' is not a whole number from 1 to ${max}`);
  }
  return n;
}

/** What `--output otlp` sends where: from the flag, then the environment, then the defaults. */
export function otlpConfig(flagEndpoint: string, env: Env, hostname: string): OtlpConfig {
  const signal = env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url = flagEndpoint
    ? logsUrl(flagEndpoint, "-otlp-endpoint")
    : signal
    ? logsUrl(signal, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", true)
    : logsUrl(base || DEFAULT_ENDPOINT, "OTEL_EXPORTER_OTLP_ENDPOINT");
  const proto = pick(env, "PROTOCOL");
  if (proto && proto.value !== "http/protobuf" && proto.value !== "http/json") {
    throw new UsageError(
      `${proto.name}: '${proto.value}' is not supported; use http/protobuf (the default) or http/json`,
    );
  }
  const compression = pick(env, "COMPRESSION");
  if (compression && compression.value !== "gzip" && compression.value !== "none") {
    throw new UsageError(`${compression.name}: '${compression.value}' is not supported; use gzip or none`);
  }
  const headers = pick(env, "HEADERS");
  const timeout = pick(env, "TIMEOUT");
  const file = (what: string) => pick(env, what)?.value ?? "";
  const resource: Record<string, string> = {
    "service.name": "lightmon",
    "service.version": VERSION,
    "host.name": hostname,
  };
  const attrs = env.OTEL_RESOURCE_ATTRIBUTES?.trim();
  if (attrs) Object.assign(resource, parsePairs(attrs, "OTEL_RESOURCE_ATTRIBUTES"));
  // As the specification says: OTEL_SERVICE_NAME over service.name in the attributes.
  const service = env.OTEL_SERVICE_NAME?.trim();
  if (service) resource["service.name"] = service;
  const maxBatch = positive(env, "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BATCH, 100_000);
  const maxQueue = positive(env, "OTEL_BLRP_MAX_QUEUE_SIZE", DEFAULT_QUEUE, 10_000_000);
  if (maxBatch > maxQueue) {
    throw new UsageError(
      `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE (${maxBatch}) is larger than OTEL_BLRP_MAX_QUEUE_SIZE (${maxQueue})`,
    );
  }
  return {
    url,
    protocol: (proto?.value ?? "http/protobuf") as OtlpProtocol,
    headers: headers ? parsePairs(headers.value, headers.name) : {},
    gzip: compression?.value === "gzip",
    timeoutMs: timeout ? positive({ [timeout.name]: timeout.value }, timeout.name, 0, 600_000) : DEFAULT_TIMEOUT_MS,
    certificate: file("CERTIFICATE"),
    clientCertificate: file("CLIENT_CERTIFICATE"),
    clientKey: file("CLIENT_KEY"),
    resource,
    maxBatch,
    batchDelayMs: positive(env, "OTEL_BLRP_SCHEDULE_DELAY", DEFAULT_DELAY_MS, 60_000),
    maxQueue,
  };
}
