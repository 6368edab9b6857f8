/**
 * End-to-end: filters on real connections, and the log file and summary outputs.
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { bpfTest, closedPort, connect, CONNECTOR, Lightmon, listen, run, SELF, type Truth } from "./harness.ts";

bpfTest("-exclude and -include leave exactly the expected events", async () => {
  const a = listen("127.0.0.1");
  const b = listen("127.0.0.1");
  const c = listen("::1");
  const ports = [a.port, b.port, c.port];
  const mine = `dport=${a.port} || dport=${b.port} || dport=${c.port}`;
  // Original syntax: groups separated by ';', '&&' inside a group.
  const lm = new Lightmon([
    "--output",
    "json",
    "-include",
    mine,
    "-exclude",
    `dip="127.0.0.1" && dport=${a.port}; dip=::1/128`,
  ]);
  let tb: Truth[] = [];
  try {
    await lm.ready();
    await connect("127.0.0.1", a.port, { n: 3 });
    tb = await connect("127.0.0.1", b.port, { n: 3 });
    await connect("::1", c.port, { n: 3 });
    await connect("::ffff:127.0.0.1", a.port, { n: 2 }); // v4-mapped: dip=127.0.0.1 matches it
    await lm.until((out) => out.split("\n").length > 3, 5000, "three events");
    await new Promise((r) => setTimeout(r, 300)); // nothing else may follow
  } finally {
    await lm.stop();
    [a, b, c].forEach((l) => l.close());
  }
  const events = lm.events().filter((e) => ports.includes(e.dport as number));
  assert.deepEqual(events.map((e) => [e.dport, e.sport]), tb.map((t) => [b.port, t.sport]));
  assert.match(lm.stderr, /lightmon: seen \d+ emitted 3 filtered \d+ dropped 0/);
});

bpfTest("a malformed -exclude is one line pointing at the column, exit 2", async () => {
  const lm = new Lightmon(["-exclude", "dport=80 && && dip=1"]);
  const st = await lm.exit();
  assert.equal(st.code, 2);
  assert.equal(lm.stderr, "lightmon: -exclude: unexpected '&&' at column 13\n");
});

bpfTest("-output logfile writes the original's line format to an hourly file", async () => {
  const dir = await Deno.makeTempDir();
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["-output", "logfile", "-log_path", dir, "-include", `dport=${l.port}`]);
  let truth: Truth[] = [];
  try {
    await lm.ready();
    truth = await connect("127.0.0.1", l.port, { n: 4 });
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    await lm.stop();
    l.close();
  }
  assert.equal(lm.stdout, "", "nothing on stdout in log mode");
  const files = [...Deno.readDirSync(dir)].map((d) => d.name);
  assert.equal(files.length, 1);
  assert.match(files[0], /^lightmon\.log\.\d{10}00$/);
  assert.equal(Deno.statSync(`${dir}/${files[0]}`).mode! & 0o777, 0o640);
  const lines = Deno.readTextFileSync(`${dir}/${files[0]}`).trimEnd().split("\n").map((x) => JSON.parse(x));
  assert.deepEqual(
    lines.map((x) => x.sport),
    truth.map((t) => String(t.sport)),
  );
  for (const [i, x] of lines.entries()) {
    assert.deepEqual(x, {
      conatiner: SELF.container ?? "",
      dip: "127.0.0.1",
      dport: String(l.port),
      ipv6: 0,
      level: "info",
      msg: "",
      pid: String(truth[i].pid),
      procArgs: `-n 4 127.0.0.1 ${l.port}`,
      procPath: CONNECTOR,
      sip: "127.0.0.1",
      sport: String(truth[i].sport),
      time: x.time,
      user: SELF.userOrUid,
    });
  }
  await Deno.remove(dir, { recursive: true });
});

bpfTest("a full disk is reported once, survived, and no partial line is left", async () => {
  const mnt = await Deno.makeTempDir();
  await run("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt]);
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["-output", "log", "-log_path", `${mnt}/logs`, "-include", `dport=${l.port}`]);
  try {
    await lm.ready();
    await connect("127.0.0.1", l.port, { n: 5 });
    await new Promise((r) => setTimeout(r, 300));
    // Fill the file system, then try to log.
    await run("sh", ["-c", `dd if=/dev/zero of=${mnt}/filler bs=4k 2>/dev/null; true`]);
    await connect("127.0.0.1", l.port, { n: 50 });
    await lm.until((_o, e) => /lightmon: log: cannot write .*; dropping events until it can/.test(e), 5000, "report");
    await Deno.remove(`${mnt}/filler`);
    await connect("127.0.0.1", l.port, { n: 5 });
    await lm.until((_o, e) => /lightmon: log: writing .* again; \d+ events were dropped/.test(e), 5000, "recovery");
    const st = await lm.stop();
    assert.equal(st.code, 0);
    const logs = [...Deno.readDirSync(`${mnt}/logs`)];
    const text = Deno.readTextFileSync(`${mnt}/logs/${logs[0].name}`);
    assert.ok(text.endsWith("\n"));
    const lines = text.trimEnd().split("\n");
    for (const x of lines) assert.equal(JSON.parse(x).dport, String(l.port));
    assert.ok(lines.length >= 10 && lines.length < 60, `${lines.length} lines`);
    // One line per outage: a page with room left may take a small batch between two
    // failures, but no failure is ever reported twice in a row.
    const reports = lm.stderr.split("\n").filter((x) => /log: (cannot write|writing)/.test(x));
    reports.forEach((x, i) => assert.equal(x.includes("cannot write"), i % 2 === 0, reports.join("\n")));
    assert.equal(reports.length % 2, 0, "the last report is the recovery");
  } finally {
    await lm.stop().catch(() => {});
    l.close();
    await run("umount", [mnt]);
    await Deno.remove(mnt, { recursive: true });
  }
});

bpfTest("--duration with -output summary prints unique flows with exact counts", async () => {
  const a = listen("127.0.0.1");
  const b = listen("::1");
  const lm = new Lightmon([
    "--output",
    "summary",
    "--summary-format",
    "json",
    "--duration",
    "3s",
    "--include",
    `dport=${a.port} || dport=${b.port}`,
  ]);
  await lm.ready();
  await connect("127.0.0.1", a.port, { n: 7 });
  await connect("::1", b.port, { n: 2 });
  const st = await lm.exit(15_000);
  a.close();
  b.close();
  assert.equal(st.code, 0, lm.stderr);
  const flows = lm.stdout.trimEnd().split("\n").map((x) => JSON.parse(x));
  assert.deepEqual(
    flows.map((f) => [f.process, f.user, f.container, f.daddr, f.dport, f.status, f.count]),
    [
      [CONNECTOR, SELF.userOrUid, SELF.container ?? "", "127.0.0.1", a.port, "established", 7],
      [CONNECTOR, SELF.userOrUid, SELF.container ?? "", "::1", b.port, "established", 2],
    ],
  );
  for (const f of flows) assert.ok(f.firstSeen <= f.lastSeen);
});

interface PromFamily {
  name: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}

async function scrape(port: number): Promise<Map<string, PromFamily>> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") ?? "", /^text\/plain/);
  return new Map((parsePrometheus(await r.text()) as PromFamily[]).map((f) => [f.name, f]));
}

/** The events the kernel filtered, as lightmon's metrics at `port` say. */
async function kernelFiltered(port: number): Promise<number> {
  const m = await scrape(port);
  return Number(m.get("lightmon_events_filtered_total")!.metrics.find((x) => x.labels!.where === "kernel")!.value);
}

bpfTest("--metrics-addr serves Prometheus counts that match the events emitted", async () => {
  const port = closedPort();
  const l = listen("127.0.0.1");
  const refused = closedPort();
  const lm = new Lightmon([
    "--output",
    "json",
    "--metrics-addr",
    `127.0.0.1:${port}`,
    "--include",
    `dport=${l.port} || dport=${refused}`,
  ]);
  try {
    await lm.ready();
    await connect("127.0.0.1", l.port, { n: 6 });
    await connect("::ffff:127.0.0.1", l.port, { n: 2 });
    await connect("127.0.0.1", refused, { n: 3 });
    await lm.until((out) => out.split("\n").length > 11, 5000, "11 events");
    const m = await scrape(port);
    const conns = m.get("lightmon_connections_total")!;
    assert.equal(conns.type, "COUNTER");
    const by = Object.fromEntries(
      conns.metrics.map((x) => [`${x.labels!.status}/${x.labels!.family}`, Number(x.value)]),
    );
    assert.deepEqual(by, { "established/4": 8, "refused/4": 3 });
    assert.equal(Number(m.get("lightmon_events_lost_total")!.metrics[0].value), 0);
    assert.deepEqual(m.get("lightmon_events_filtered_total")!.metrics.map((x) => x.labels!.where), ["kernel", "user"]);
    // The ledger adds up in the metrics as on the exit line.
    const one = (name: string) => Number(m.get(name)!.metrics[0].value);
    const sum = (name: string) => m.get(name)!.metrics.reduce((a, x) => a + Number(x.value), 0);
    assert.ok(one("lightmon_events_seen_total") >= 11);
    assert.equal(
      one("lightmon_events_seen_total"),
      one("lightmon_events_emitted_total") + sum("lightmon_events_filtered_total") +
        sum("lightmon_events_dropped_total"),
    );
    assert.ok(
      ["ring-full", "conns-full"].every((c) =>
        m.get("lightmon_events_dropped_total")!.metrics.some((x) => x.labels!.cause === c)
      ),
    );
    const fill = Number(m.get("lightmon_ringbuf_fill_ratio_max")!.metrics[0].value);
    assert.ok(fill > 0 && fill < 1, `fill ${fill}`);
    assert.deepEqual(
      m.get("lightmon_enrichment_misses_total")!.metrics.map((x) => x.labels!.kind).sort(),
      ["container", "process"],
    );
    assert.equal(m.get("lightmon_build_info")!.metrics[0].labels!.strategy, "tp_btf");
    // No per-address or per-pid labels.
    for (const f of m.values()) {
      for (const x of f.metrics) {
        for (const k of Object.keys(x.labels ?? {})) {
          assert.ok(
            [
              "status",
              "family",
              "kind",
              "version",
              "strategy",
              "where",
              "cause",
              "transport",
              "reason",
              "direction",
              "stage",
              "counter",
            ]
              .includes(k),
            k,
          );
        }
      }
    }
  } finally {
    await lm.stop();
    l.close();
  }
  assert.match(lm.stderr, /metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/);
});

bpfTest("a --metrics-addr already in use is one line and exit 2, before anything loads", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const lm = new Lightmon(["--metrics-addr", `127.0.0.1:${port}`]);
  const st = await lm.exit();
  busy.close();
  assert.equal(st.code, 2);
  assert.equal(lm.stderr, `lightmon: --metrics-addr 127.0.0.1:${port}: cannot listen (address already in use)\n`);
});

bpfTest("dport exclusions dropped in the kernel leave exactly what the user-space filter leaves", async () => {
  const a = listen("127.0.0.1");
  const b = listen("127.0.0.1");
  const c = listen("::1");
  const exclude = `dport=${a.port}; dport=${b.port} && comm=nobody-has-this-name`;
  const ports = [a.port, b.port, c.port];
  const runWith = async (env: Record<string, string>) => {
    const mport = closedPort();
    const lm = new Lightmon(["--output", "json", "-exclude", exclude, "--metrics-addr", `127.0.0.1:${mport}`], env);
    const truths: Truth[] = [];
    let kernel = 0;
    try {
      await lm.ready();
      truths.push(...await connect("127.0.0.1", a.port, { n: 5 }));
      truths.push(...await connect("127.0.0.1", b.port, { n: 3 }));
      truths.push(...await connect("::1", c.port, { n: 2 }));
      await lm.until((out) => out.split("\n").filter((l) => l.includes(`"dport":${c.port},`)).length === 2, 5000);
      await new Promise((r) => setTimeout(r, 200));
      kernel = await kernelFiltered(mport);
    } finally {
      await lm.stop();
    }
    const kept = lm.events().filter((e) => ports.includes(e.dport as number)).map((e) => e.sport).sort();
    return { lm, kept, kernel, truths };
  };
  const pushed = await runWith({});
  const reference = await runWith({ LIGHTMON_KERNEL_FILTER: "0" });
  [a, b, c].forEach((l) => l.close());
  assert.match(pushed.lm.stderr, new RegExp(`dropping dport ${a.port} in the kernel`));
  assert.doesNotMatch(reference.lm.stderr, /in the kernel/);
  assert.equal(pushed.kept.length, 5, "b's 3 and c's 2 are kept");
  assert.equal(reference.kept.length, 5);
  assert.ok(pushed.kernel >= 5, `kernel dropped ${pushed.kernel}`);
  assert.equal(reference.kernel, 0);
  // Same decisions: the kept events are b's and c's connects in both runs.
  const bc = (t: Truth[]) => t.slice(5).map((x) => x.sport).sort();
  assert.deepEqual(pushed.kept, bc(pushed.truths));
  assert.deepEqual(reference.kept, bc(reference.truths));
});

bpfTest("an -include of ports kept to in the kernel leaves exactly what the user-space filter leaves", async () => {
  const a = listen("127.0.0.1");
  const b = listen("::1");
  const c = listen("127.0.0.1");
  // a's client ends (the peer's port is a's), b's listening ends (this host's port is b's), nothing of c's.
  const include = `rport=${a.port} || lport=${b.port}`;
  const runWith = async (env: Record<string, string>) => {
    const mport = closedPort();
    const lm = new Lightmon(
      ["--output", "json", "--events", "all", "-include", include, "--metrics-addr", `127.0.0.1:${mport}`],
      env,
    );
    const truths: Truth[] = [];
    let kernel = 0;
    try {
      await lm.ready();
      truths.push(...await connect("127.0.0.1", a.port, { n: 4 }));
      truths.push(...await connect("::1", b.port, { n: 3 }));
      truths.push(...await connect("127.0.0.1", c.port, { n: 2 }));
      // 4 connects and closes of a's clients, 3 accepts and closes of b's.
      await lm.until((out) => out.split("\n").filter((l) => l.includes(`"event":"close"`)).length === 7, 5000);
      await new Promise((r) => setTimeout(r, 200));
      kernel = await kernelFiltered(mport);
    } finally {
      await lm.stop();
    }
    const kept = lm.events().map((e) => `${e.event} ${e.direction} ${e.sport}->${e.dport}`).sort();
    return { lm, kept, kernel, truths };
  };
  const pushed = await runWith({});
  const reference = await runWith({ LIGHTMON_KERNEL_FILTER: "0" });
  [a, b, c].forEach((l) => l.close());
  assert.match(pushed.lm.stderr, new RegExp(`keeping only rport ${a.port} and lport ${b.port} in the kernel`));
  assert.doesNotMatch(reference.lm.stderr, /in the kernel/);
  const expected = (t: Truth[]) =>
    [
      ...t.slice(0, 4).flatMap((
        x,
      ) => [`connect outbound ${x.sport}->${a.port}`, `close outbound ${x.sport}->${a.port}`]),
      ...t.slice(4, 7).flatMap((x) => [`accept inbound ${b.port}->${x.sport}`, `close inbound ${b.port}->${x.sport}`]),
    ].sort();
  assert.deepEqual(pushed.kept, expected(pushed.truths));
  assert.deepEqual(reference.kept, expected(reference.truths));
  // The kernel made none of a's listening ends, b's client ends or c's: each counted once, at its outcome or accept.
  assert.ok(pushed.kernel >= 3 + 4 + 2 * 2, `kernel filtered ${pushed.kernel}`);
  assert.equal(reference.kernel, 0);
});
