import assert from "node:assert/strict";
import type { ConnEvent } from "../event.ts";
import { OTEL_FIELDS } from "../fields.ts";
import { LOGS_REQUEST as REQUEST, plainAttributes } from "../testdata/otlp.ts";
import { sampleEvent, sampleFlow } from "../testdata/event.ts";
import { VERSION } from "../version.ts";
import { JsonLogBatch, otelAttributes, ProtoLogBatch } from "./otlp_encode.ts";
import { logsUrl, type OtlpConfig, otlpConfig, parsePairs } from "./otlp_config.ts";
import { backoffMs, OtlpRenderer, rejectedIn, retryAfterMs } from "./otlp.ts";
import { UsageError } from "../usage_error.ts";

/** The protobuf request decoded with the official definitions. */
function decode(bytes: Uint8Array) {
  const msg = REQUEST.decode(bytes);
  return REQUEST.toObject(msg, { longs: String, defaults: false, arrays: true });
}

const RESOURCE = { "service.name": "lightmon", "service.version": VERSION, "host.name": "node-1" };
const SCOPE = { name: "lightmon", version: VERSION };

const EVENTS: ConnEvent[] = [
  sampleEvent(),
  sampleEvent({ family: 6, saddr: "fd00::1", daddr: "fd00::2", container: "", containerId: "", image: "", pid: 7 }),
  sampleEvent({ event: "accept", direction: "inbound", connId: 77, novel: true }),
  sampleEvent({
    event: "close",
    connId: 77,
    status: "closed",
    closedBy: "remote",
    durationMs: 1234,
    bytesSent: 2 ** 40,
    bytesReceived: 5,
    rttUs: 80,
    retransmits: 2,
    novel: false,
  }),
  sampleEvent({ event: "dns", query: "example.com", qtype: "A", rcode: "NOERROR", answers: ["A example.com 1.2.3.4"] }),
  sampleEvent({
    event: "flow",
    flow: sampleFlow({ statuses: [["established", 3], ["refused", 1]], connections: 4, processes: 2 }),
  }),
  // Hostile text: a lone surrogate (a JSON escape in a container name), non-ASCII, a long argv.
  sampleEvent({ container: "bad\ud800name", comm: "wget\u202e", args: ["x".repeat(20_000), "ü"], pid: 8 }),
  sampleEvent({ kernelTime: 2n ** 60n, cgroupId: 2n ** 63n + 5n, pid: 9 }),
];

Deno.test("protobuf records decode with the official definitions to the attributes of each event", () => {
  const batch = new ProtoLogBatch(RESOURCE, SCOPE);
  const observed = 1713334190000000001n;
  for (const e of EVENTS) batch.add(e, observed);
  assert.equal(batch.count, EVENTS.length);
  const req = decode(batch.take());
  assert.equal(batch.count, 0);
  assert.equal(req.resourceLogs.length, 1);
  const rl = req.resourceLogs[0];
  assert.deepEqual(plainAttributes(rl.resource.attributes), RESOURCE);
  assert.deepEqual({ name: rl.scopeLogs[0].scope.name, version: rl.scopeLogs[0].scope.version }, SCOPE);
  const records = rl.scopeLogs[0].logRecords;
  assert.equal(records.length, EVENTS.length);
  EVENTS.forEach((e, i) => {
    const r = records[i];
    assert.deepEqual(plainAttributes(r.attributes), otelAttributes(e), `event ${i}`);
    assert.equal(r.timeUnixNano, String(e.wallNs));
    assert.equal(r.observedTimeUnixNano, String(observed));
    assert.equal(r.severityNumber, e.novel ? 13 : 9);
    assert.equal(r.severityText, e.novel ? "WARN" : "INFO");
    assert.equal(r.eventName, `lightmon.${e.event}`);
  });
  assert.equal(records[0].body.stringValue, "connect established");
  assert.equal(records[5].body.stringValue, "flow 1/4 failed");
});

Deno.test("attributes follow the semantic conventions, and an empty value is no attribute", () => {
  const a = otelAttributes(EVENTS[0]);
  assert.equal(a["process.pid"], 501750);
  assert.equal(a["process.parent_pid"], 1);
  assert.equal(a["process.executable.path"], "/usr/bin/busybox");
  assert.deepEqual(a["process.command_args"], ["busybox", "wget", "www.example.com"]);
  assert.equal(a["process.owner"], "root");
  assert.equal(a["user.id"], "0");
  assert.equal(a["network.peer.address"], "183.2.172.17");
  assert.equal(a["network.peer.port"], 443);
  assert.equal(a["network.local.address"], "10.1.8.14");
  assert.equal(a["network.local.port"], 7825);
  assert.equal(a["network.transport"], "tcp");
  assert.equal(a["network.type"], "ipv4");
  assert.equal(a["container.id"], "a".repeat(64));
  assert.equal(a["container.name"], "dreamy_carson");
  assert.equal(a["container.image.name"], "busybox:latest");
  assert.equal(a["lightmon.kernel_time"], "13898485459656");
  assert.equal(a["lightmon.status"], "established");
  assert.equal("k8s.pod.name" in a, false, "no pod: no attribute");
  assert.equal("lightmon.dns_name" in a, false);
  assert.equal("lightmon.duration_ms" in a, false, "a connect has no close fields");
  assert.equal(otelAttributes(EVENTS[1])["network.type"], "ipv6");
  assert.deepEqual(otelAttributes(EVENTS[5])["lightmon.statuses"], { established: 3, refused: 1 });
  assert.equal(otelAttributes(EVENTS[4])["dns.question.name"], "example.com");
  assert.equal(otelAttributes(EVENTS[6])["container.name"], "bad\ufffdname", "a lone surrogate is replaced");
  assert.equal(otelAttributes(EVENTS[7])["lightmon.cgroup_id"], String(2n ** 63n + 5n), "64-bit ids exactly");
  // Every OTLP name is unique and every JSON field but the time has one.
  const keys = OTEL_FIELDS.map((f) => f.key);
  assert.equal(new Set(keys).size, keys.length);
});

Deno.test("a process's attributes are encoded again when its values change under the same pid", () => {
  const batch = new ProtoLogBatch(RESOURCE, SCOPE);
  batch.add(sampleEvent({ exe: "/bin/a" }), 1n);
  batch.add(sampleEvent({ exe: "/bin/b" }), 1n);
  const records = decode(batch.take()).resourceLogs[0].scopeLogs[0].logRecords;
  assert.deepEqual(
    records.map((r: { attributes: unknown[] }) => plainAttributes(r.attributes)["process.executable.path"]),
    [
      "/bin/a",
      "/bin/b",
    ],
  );
});

Deno.test("http/json requests carry the same records as protobuf ones", () => {
  const proto = new ProtoLogBatch(RESOURCE, SCOPE);
  const json = new JsonLogBatch(RESOURCE, SCOPE);
  for (const e of EVENTS) {
    proto.add(e, 5n);
    json.add(e, 5n);
  }
  const want = decode(proto.take()).resourceLogs[0];
  const got = JSON.parse(new TextDecoder().decode(json.take())).resourceLogs[0];
  assert.deepEqual(plainAttributes(got.resource.attributes), RESOURCE);
  const records = got.scopeLogs[0].logRecords;
  assert.equal(records.length, EVENTS.length);
  records.forEach((r: Record<string, unknown> & { attributes: unknown[] }, i: number) => {
    const w = want.scopeLogs[0].logRecords[i];
    assert.deepEqual(plainAttributes(r.attributes), plainAttributes(w.attributes), `event ${i}`);
    assert.equal(r.timeUnixNano, w.timeUnixNano);
    assert.equal(r.eventName, w.eventName);
    assert.equal(r.severityNumber, w.severityNumber);
  });
});

Deno.test("the endpoint: a base gets /v1/logs, a logs URL is used as it is, gRPC is refused", () => {
  assert.equal(logsUrl("http://c:4318", "x"), "http://c:4318/v1/logs");
  assert.equal(logsUrl("http://c:4318/", "x"), "http://c:4318/v1/logs");
  assert.equal(logsUrl("https://gw/otlp", "x"), "https://gw/otlp/v1/logs");
  assert.equal(logsUrl("https://gw/otlp/v1/logs", "x"), "https://gw/otlp/v1/logs");
  assert.equal(logsUrl("http://c:4318/custom", "x", true), "http://c:4318/custom");
  assert.throws(() => logsUrl("grpc://c:4317", "-otlp-endpoint"), /not http or https.*not gRPC/);
  assert.throws(() => logsUrl("collector:4318", "-otlp-endpoint"), /not http or https/);
  assert.throws(() => logsUrl("//x", "-otlp-endpoint"), /not a URL/);
});

Deno.test("configuration from the OTEL_* variables, the logs-specific over the general, the flag over both", () => {
  const c = otlpConfig("", {
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://base:4318",
    OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20abc, x-tenant=t1",
    OTEL_EXPORTER_OTLP_LOGS_HEADERS: "x-logs=1",
    OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_TIMEOUT: "2500",
    OTEL_RESOURCE_ATTRIBUTES: "k8s.node.name=node-7,service.name=ignored,deployment.environment=prod",
    OTEL_SERVICE_NAME: "lightmon-edge",
    OTEL_BLRP_MAX_QUEUE_SIZE: "5000",
  }, "host-a");
  assert.equal(c.url, "http://base:4318/v1/logs");
  assert.deepEqual(c.headers, { "x-logs": "1" });
  assert.equal(c.gzip, true);
  assert.equal(c.protocol, "http/json");
  assert.equal(c.timeoutMs, 2500);
  assert.equal(c.maxQueue, 5000);
  assert.deepEqual(c.resource, {
    "service.name": "lightmon-edge",
    "service.version": VERSION,
    "host.name": "host-a",
    "k8s.node.name": "node-7",
    "deployment.environment": "prod",
  });
  assert.equal(otlpConfig("", { OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "http://l:1/x" }, "h").url, "http://l:1/x");
  assert.equal(
    otlpConfig("http://f:2", { OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "http://l:1/x" }, "h").url,
    "http://f:2/v1/logs",
  );
  const d = otlpConfig("", {}, "h");
  assert.equal(d.url, "http://localhost:4318/v1/logs");
  assert.equal(d.protocol, "http/protobuf");
  assert.equal(d.gzip, false);
  assert.equal(d.timeoutMs, 10_000);
});

Deno.test("a bad OTEL_* value is one usage error naming the variable", () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, /^OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported/],
    [{ OTEL_EXPORTER_OTLP_COMPRESSION: "zstd" }, /^OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd'/],
    [{ OTEL_EXPORTER_OTLP_HEADERS: "authorization" }, /^OTEL_EXPORTER_OTLP_HEADERS: 'authorization' is not key=value/],
    [{ OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: "soon" }, /^OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: 'soon' is not a whole number/],
    [{ OTEL_BLRP_MAX_QUEUE_SIZE: "10", OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: "20" }, /larger than/],
    [{ OTEL_RESOURCE_ATTRIBUTES: "a=%zz" }, /^OTEL_RESOURCE_ATTRIBUTES: the value of 'a' is not percent-encoded/],
  ];
  for (const [env, re] of bad) {
    assert.throws(() => otlpConfig("", env, "h"), (e) => e instanceof UsageError && re.test(e.message), re.source);
  }
});

Deno.test("header names from the environment never reach a prototype", () => {
  const h = parsePairs("__proto__=x,constructor=y", "H");
  assert.equal(Object.getPrototypeOf(h), Object.prototype);
  assert.deepEqual(Object.keys(h), ["__proto__", "constructor"]);
  assert.equal(h["__proto__" as keyof typeof h], "x");
});

/** A config for the exporter's own tests: batches of `maxBatch`, sent at once. */
function testConfig(over: Partial<OtlpConfig> = {}): OtlpConfig {
  return { ...otlpConfig("http://127.0.0.1:9/", {}, "h"), maxBatch: 2, batchDelayMs: 10, ...over };
}

Deno.test("a collector that refuses every batch for good: all counted as export-rejected, said once", async () => {
  const lines: string[] = [];
  let posts = 0;
  const r = new OtlpRenderer(
    testConfig(),
    () => (posts++, Promise.resolve(new Response("no", { status: 401, statusText: "Unauthorized" }))),
    (l) => lines.push(l),
    SCOPE,
  );
  for (let i = 0; i < 10; i++) r.event(sampleEvent({ sport: i }));
  r.close();
  await r.settle(1000);
  assert.equal(posts, 5);
  assert.deepEqual(r.drops(), { "export-queue-full": 0, "export-rejected": 10, "export-unsent": 0 });
  assert.equal(lines.filter((l) => /refuses records \(HTTP 401 Unauthorized\)/.test(l)).length, 1, lines.join("\n"));
  assert.equal(r.counters()["export.sent"], 0);
});

Deno.test("a partial success's rejected records are counted; the rest are sent", async () => {
  // ExportLogsServiceResponse { partial_success (1) { rejected_log_records (1): 1 } }
  const partial = new Uint8Array([0x0a, 0x02, 0x08, 0x01]);
  assert.equal(rejectedIn(partial, false), 1);
  assert.equal(rejectedIn(new TextEncoder().encode('{"partialSuccess":{"rejectedLogRecords":"2"}}'), true), 2);
  const r = new OtlpRenderer(testConfig(), () => Promise.resolve(new Response(partial)), () => {}, SCOPE);
  for (let i = 0; i < 4; i++) r.event(sampleEvent({ sport: i }));
  r.close();
  await r.settle(1000);
  assert.equal(r.counters()["export.sent"], 2);
  assert.equal(r.drops()["export-rejected"], 2);
});

Deno.test("past the queue's bound, batches are dropped and counted while the collector hangs; the rest are unsent at stop", async () => {
  const r = new OtlpRenderer(
    testConfig({ maxQueue: 4, timeoutMs: 60_000 }),
    (_b, signal) => new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    () => {},
    SCOPE,
  );
  for (let i = 0; i < 10; i++) r.event(sampleEvent({ sport: i }));
  r.close();
  const t0 = performance.now();
  await r.settle(0);
  assert.ok(performance.now() - t0 < 6000, "the final flush is bounded");
  assert.deepEqual(r.drops(), { "export-queue-full": 6, "export-rejected": 0, "export-unsent": 4 });
});

Deno.test("Retry-After in seconds or as a date, bounded; backoff doubles from 250 ms to 5 s with jitter", () => {
  assert.equal(retryAfterMs("3"), 3000);
  assert.equal(retryAfterMs("86400"), 60_000);
  assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 8000), 2000);
  assert.equal(retryAfterMs("soon"), undefined);
  assert.equal(retryAfterMs(null), undefined);
  assert.equal(backoffMs(1, () => 0.5), 250);
  assert.equal(backoffMs(3, () => 0.5), 1000);
  assert.equal(backoffMs(30, () => 0.5), 5000);
  assert.equal(backoffMs(1, () => 0), 200);
  assert.equal(backoffMs(1, () => 1), 300);
});
