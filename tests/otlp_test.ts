/**
 * End-to-end: `--output otlp` against a receiver that decodes every request with
 * the official OTLP protobuf definitions (or as OTLP JSON). The records are the
 * connections the connector made (ground truth), and their attributes are those of
 * the JSON records a second lightmon wrote of the same connections, by the mapping.
 * An outage loses nothing; a collector that is gone loses what the queue cannot
 * hold, counted exactly.
 */
import assert from "node:assert/strict";
import { bpfTest, closedPort, connect, Lightmon, listen, type Truth } from "./harness.ts";
import { OtlpReceiver, type Received } from "./helpers/otlp_receiver.ts";
import { OTEL_FIELDS } from "../src/fields.ts";
import { dockerTest, IMAGE, runContainer, uniqueName } from "./docker.ts";
import { VERSION } from "../src/version.ts";

type Ev = Record<string, unknown>;

/** The attributes a JSON record stands for, by the registry's mapping. */
function expectedAttributes(j: Ev): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of OTEL_FIELDS) {
    let v = j[f.field.key];
    if (v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    if (f.key === "user.id") v = String(v);
    if (f.key === "network.type") v = v === "AF_INET6" ? "ipv6" : "ipv4";
    out[f.key] = v;
  }
  return out;
}

/** What differs between two lightmons watching the same connection: their own clocks' readings. */
const OWN_CLOCKS = ["lightmon.kernel_time", "lightmon.latency_us"];
const withoutClocks = (a: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(a).filter(([k]) => !OWN_CLOCKS.includes(k)));

/** 10 connects to a v4 listener and 10 to a v6 one: their ground truth, and the filter that keeps only them. */
async function twentyConnects(): Promise<{ truth: Truth[]; ports: number[]; close: () => void }> {
  const v4 = listen("127.0.0.1");
  const v6 = listen("::1");
  const truth = [...await connect("127.0.0.1", v4.port, { n: 10 }), ...await connect("::1", v6.port, { n: 10 })];
  return { truth, ports: [v4.port, v6.port], close: () => (v4.close(), v6.close()) };
}

const ours = (records: Received[], truth: Truth[]) => {
  const sports = new Set(truth.map((t) => t.sport));
  return records.filter((r) => sports.has(r.attributes["network.local.port"] as number));
};

bpfTest(
  "otlp: 20 connects, v4 and v6, arrive as 20 log records; their attributes are the JSON records' by the conventions",
  async () => {
    const rx = new OtlpReceiver();
    const v4 = listen("127.0.0.1");
    const v6 = listen("::1");
    const include = `dport=${v4.port} || dport=${v6.port}`;
    const json = new Lightmon(["--output", "json", "--include", include]);
    const otlp = new Lightmon(["--output", "otlp", "--otlp-endpoint", rx.url, "--include", include], {
      OTEL_RESOURCE_ATTRIBUTES: "k8s.node.name=node-a",
    });
    try {
      await Promise.all([json.ready(), otlp.ready()]);
      assert.match(otlp.stderr, new RegExp(`output otlp to ${rx.url}/v1/logs \\(http/protobuf\\)`));
      assert.doesNotMatch(otlp.stderr, /the collector is not answering/);
      const truth = [...await connect("127.0.0.1", v4.port, { n: 10 }), ...await connect("::1", v6.port, { n: 10 })];
      await json.until((o) => o.trim().split("\n").length >= 20, 10_000, "20 JSON records");
      await new Promise((r) => setTimeout(r, 300));
      const [js, os] = await Promise.all([json.stop(), otlp.stop()]);
      assert.equal(js.code, 0, json.stderr);
      assert.equal(os.code, 0, otlp.stderr);
      assert.match(otlp.stderr, /seen 20 emitted 20 filtered \d+ dropped 0/);
      const records = ours(rx.records, truth);
      assert.equal(rx.records.length, 20, JSON.stringify(rx.records.map((r) => r.attributes["network.peer.port"])));
      assert.equal(records.length, 20);
      const events = json.events();
      for (const t of truth) {
        const r = records.find((x) => x.attributes["network.local.port"] === t.sport)!;
        const j = events.find((e) => e.sport === t.sport)!;
        assert.ok(r && j, `record of sport ${t.sport}`);
        // The ground truth, by the conventions' names.
        assert.equal(r.attributes["process.pid"], t.pid);
        assert.equal(r.attributes["thread.id"], t.tid);
        assert.equal(r.attributes["network.peer.port"], j.dport);
        assert.equal(r.attributes["network.transport"], "tcp");
        assert.equal(r.attributes["lightmon.status"], t.status);
        // Every attribute is the JSON record's, but what each lightmon read off its own clock.
        assert.deepEqual(withoutClocks(r.attributes), withoutClocks(expectedAttributes(j)), `sport ${t.sport}`);
        assert.equal(typeof r.attributes["lightmon.kernel_time"], "string");
        const wallMs = Number(BigInt(r.timeUnixNano) / 1_000_000n);
        assert.ok(Math.abs(wallMs - Date.parse(j.time as string)) < 1000, `${r.timeUnixNano} vs ${j.time}`);
        assert.ok(BigInt(r.observedTimeUnixNano) >= BigInt(r.timeUnixNano));
        assert.equal(r.eventName, "lightmon.connect");
        assert.equal(r.body, `connect ${t.status}`);
        assert.equal(r.severityText, "INFO");
        assert.deepEqual(r.resource, {
          "service.name": "lightmon",
          "service.version": VERSION,
          "host.name": Deno.hostname(),
          "k8s.node.name": "node-a",
        });
        assert.deepEqual(r.scope, { name: "lightmon", version: VERSION });
      }
      const types = records.map((r) => r.attributes["network.type"]);
      assert.deepEqual([types.filter((t) => t === "ipv4").length, types.filter((t) => t === "ipv6").length], [10, 10]);
      assert.deepEqual(
        new Set(records.map((r) => r.attributes["network.peer.address"])),
        new Set(["127.0.0.1", "::1"]),
      );
      assert.ok(rx.requests.every((q) => q.contentType === "application/x-protobuf" && q.contentEncoding === ""));
    } finally {
      await Promise.all([json.stop(), otlp.stop()]).catch(() => {});
      v4.close();
      v6.close();
      await rx.close();
    }
  },
);

bpfTest("otlp: http/json with gzip and headers from OTEL_EXPORTER_OTLP_*, the same 20 records", async () => {
  const rx = new OtlpReceiver();
  const lm = new Lightmon(["--output", "otlp"], {
    OTEL_EXPORTER_OTLP_ENDPOINT: rx.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
    OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20s3cret,x-tenant=blue",
    OTEL_SERVICE_NAME: "lightmon-edge",
  });
  let run: Awaited<ReturnType<typeof twentyConnects>> | undefined;
  try {
    await lm.ready();
    assert.match(lm.stderr, /output otlp to \S+\/v1\/logs \(http\/json, gzip\)/);
    run = await twentyConnects();
    await lm.until(() => ours(rx.records, run!.truth).length >= 20, 10_000, "20 records");
    const st = await lm.stop();
    assert.equal(st.code, 0, lm.stderr);
    const records = ours(rx.records, run.truth);
    assert.equal(records.length, 20);
    for (const t of run.truth) {
      const r = records.find((x) => x.attributes["network.local.port"] === t.sport)!;
      assert.equal(r.attributes["process.pid"], t.pid);
      assert.equal(r.attributes["lightmon.status"], t.status);
      assert.equal(r.resource["service.name"], "lightmon-edge");
    }
    const withRecords = rx.requests.filter((q) => q.records > 0);
    assert.ok(withRecords.length > 0);
    for (const q of rx.requests) {
      assert.equal(q.contentType, "application/json");
      assert.equal(q.contentEncoding, "gzip");
      assert.equal(q.headers.get("authorization"), "Bearer s3cret");
      assert.equal(q.headers.get("x-tenant"), "blue");
    }
  } finally {
    await lm.stop().catch(() => {});
    run?.close();
    await rx.close();
  }
});

bpfTest("otlp: a collector answering 503 for 4 s loses nothing: every record arrives once it is back", async () => {
  const rx = new OtlpReceiver();
  let until = Infinity;
  rx.answer = () => (Date.now() < until ? { status: 503, headers: { "retry-after": "1" } } : undefined);
  const lm = new Lightmon(["--output", "otlp", "--otlp-endpoint", rx.url]);
  let run: Awaited<ReturnType<typeof twentyConnects>> | undefined;
  try {
    await lm.ready();
    until = Date.now() + 4000;
    run = await twentyConnects();
    // Sent and refused at least once during the outage, then delivered after it.
    await lm.until(() => /cannot export to \S+ \(HTTP 503/.test(lm.stderr), 5000, "the outage said");
    await lm.until(() => ours(rx.records, run!.truth).length >= 20, 15_000, "20 records after the outage");
    assert.ok(Date.now() >= until, "delivered only after the outage");
    const st = await lm.stop();
    assert.equal(st.code, 0, lm.stderr);
    const records = ours(rx.records, run.truth);
    assert.equal(records.length, 20, "each record once");
    assert.deepEqual(
      new Set(records.map((r) => r.attributes["network.local.port"])),
      new Set(run.truth.map((t) => t.sport)),
    );
    assert.ok(
      rx.requests.filter((q) => q.status === 503).length >= 2,
      JSON.stringify(rx.requests.map((q) => q.status)),
    );
    assert.match(lm.stderr, /the collector at \S+ takes records again/);
    assert.match(lm.stderr, /dropped 0;.*output export\.retries [1-9]/);
  } finally {
    await lm.stop().catch(() => {});
    run?.close();
    await rx.close();
  }
});

bpfTest(
  "otlp: a collector that is gone costs only what the queue cannot hold, counted exactly; start and stop go on",
  async () => {
    const port = closedPort();
    const v4 = listen("127.0.0.1");
    const lm = new Lightmon([
      "--output",
      "otlp",
      "--otlp-endpoint",
      `http://127.0.0.1:${port}`,
      "--include",
      `dport=${v4.port}`,
    ], {
      OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: "1",
      OTEL_BLRP_MAX_QUEUE_SIZE: "5",
    });
    try {
      await lm.ready();
      assert.match(
        lm.stderr,
        /the collector is not answering \(Connection refused \(os error 111\)\): records wait in the queue until it does/,
      );
      await connect("127.0.0.1", v4.port, { n: 20 });
      await lm.until((_o, e) => /cannot export to/.test(e), 5000, "the outage said");
      const t0 = Date.now();
      const st = await lm.stop();
      assert.ok(Date.now() - t0 < 8000, "the final flush is bounded");
      assert.equal(st.code, 0, lm.stderr);
      // Five waited in the queue (one a request), fifteen found it full; the five are unsent at the stop.
      assert.match(lm.stderr, /seen 20 emitted 0 filtered \d+ dropped 20 \(export-queue-full 15, export-unsent 5\)/);
      assert.match(lm.stderr, /5 records not exported: the collector at \S+ did not take them in time/);
    } finally {
      await lm.stop().catch(() => {});
      v4.close();
    }
  },
);

/** A CA and a certificate it signed for 127.0.0.1, in a directory only root can read. */
async function certificates(): Promise<{ dir: string; ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "lightmon-otlp-tls-" });
  const ssl = async (...args: string[]) => {
    const r = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
  };
  await ssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=lightmon test CA",
  );
  await ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1");
  await Deno.writeTextFile(`${dir}/ext`, "subjectAltName=IP:127.0.0.1\n");
  await ssl(
    "x509",
    "-req",
    "-in",
    "srv.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "srv.pem",
    "-days",
    "1",
    "-extfile",
    "ext",
  );
  return {
    dir,
    ca: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/srv.pem`),
    key: await Deno.readTextFile(`${dir}/srv.key`),
  };
}

bpfTest(
  "otlp: https to a collector whose CA is OTEL_EXPORTER_OTLP_CERTIFICATE; without it, nothing is sent",
  async () => {
    const tls = await certificates();
    const rx = new OtlpReceiver(tls);
    const v4 = listen("127.0.0.1");
    const args = ["--output", "otlp", "--otlp-endpoint", rx.url, "--include", `dport=${v4.port}`];
    const trusted = new Lightmon(args, { OTEL_EXPORTER_OTLP_CERTIFICATE: tls.ca });
    const untrusted = new Lightmon(args);
    try {
      await Promise.all([trusted.ready(), untrusted.ready()]);
      assert.doesNotMatch(trusted.stderr, /the collector is not answering/);
      assert.match(untrusted.stderr, /the collector is not answering \([^)]*(certificate|UnknownIssuer)/i);
      const truth = await connect("127.0.0.1", v4.port, { n: 5 });
      await trusted.until(() => ours(rx.records, truth).length >= 5, 10_000, "5 records over https");
      const [a, b] = await Promise.all([trusted.stop(), untrusted.stop()]);
      assert.equal(a.code, 0, trusted.stderr);
      assert.equal(b.code, 0, untrusted.stderr);
      assert.equal(ours(rx.records, truth).length, 5, "the untrusted one sent none");
      assert.match(trusted.stderr, /dropped 0/);
      assert.match(untrusted.stderr, /dropped 5 \(export-unsent 5\)/);
    } finally {
      await Promise.all([trusted.stop(), untrusted.stop()]).catch(() => {});
      v4.close();
      await rx.close();
      await Deno.remove(tls.dir, { recursive: true });
    }
  },
);

bpfTest("otlp: a bad OTEL_* value or endpoint is one line and exit 2", async () => {
  const writable = await Deno.makeTempFile({ suffix: ".pem" });
  await Deno.chmod(writable, 0o666);
  for (
    const [env, args, re] of [
      [{ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, [], /^lightmon: OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported/],
      [{}, ["--otlp-endpoint", "collector:4318"], /^lightmon: -otlp-endpoint: 'collector:4318' is not http or https/],
      [{ OTEL_EXPORTER_OTLP_CERTIFICATE: "/nonexistent/ca.pem" }, [], /^lightmon: \/nonexistent\/ca\.pem: /],
      // A CA file others may write would let them vouch for any collector.
      [
        { OTEL_EXPORTER_OTLP_CERTIFICATE: writable },
        [],
        /^lightmon: \S+: refusing the CA certificate: group or others may write it/,
      ],
    ] as const
  ) {
    const lm = new Lightmon(["--output", "otlp", "--duration", "1s", ...args], env);
    const st = await lm.exit(20_000);
    assert.equal(st.code, 2, lm.stderr);
    assert.match(lm.stderr, re);
    assert.equal(lm.stderr.trim().split("\n").length, 1, lm.stderr);
  }
  await Deno.remove(writable);
});

dockerTest(
  "otlp: a container's connect carries its container.id, container.name and container.image.name",
  async () => {
    const rx = new OtlpReceiver();
    const l = listen("127.0.0.1");
    const lm = new Lightmon(["--output", "otlp", "--otlp-endpoint", rx.url, "--include", `dport=${l.port}`]);
    try {
      await lm.ready();
      const name = uniqueName("lightmon-otlp");
      const { id, stdout } = await runContainer(name, ["/bin/connector", "127.0.0.1", String(l.port)]);
      const truth = JSON.parse(stdout.trim().split("\n")[0]);
      await lm.until(
        () => rx.records.some((r) => r.attributes["container.id"] === id),
        15_000,
        "the container's record",
      );
      const st = await lm.stop();
      assert.equal(st.code, 0, lm.stderr);
      const r = rx.records.find((x) => x.attributes["container.id"] === id)!;
      assert.equal(r.attributes["container.name"], name);
      assert.equal(r.attributes["container.image.name"], IMAGE);
      assert.equal(r.attributes["container.runtime.name"], "docker");
      assert.equal(r.attributes["process.executable.path"], "/bin/connector");
      assert.equal(r.attributes["network.local.port"], truth.sport);
      assert.equal(r.attributes["network.peer.port"], l.port);
    } finally {
      await lm.stop().catch(() => {});
      l.close();
      await rx.close();
    }
  },
);
