/**
 * End-to-end: flows counted in the kernel. `--flows` reports one record per flow an
 * interval; reporting one by one, connections the ring has no room for (a slow
 * reader) come out as flow records instead of being dropped. Every count is checked
 * against the ground truth of the clients that made the connections.
 */
import assert from "node:assert/strict";
import { bpfTest, CONNECTOR, LIGHTMON, Lightmon, ROOT, run } from "./harness.ts";
import { dnsmasq, end, netns, spawn } from "./helpers/dns_env.ts";
import { CI_IMAGE, dockerTest, ensureCiImage, uniqueName } from "./docker.ts";

type Ev = Record<string, unknown>;
const dec = new TextDecoder();
const DENO = Deno.execPath();

/** `clients` connectors storming `port` for `seconds` (RST close): how many connects they made. */
async function storm(port: number, clients: number, seconds: number): Promise<number> {
  const runs = await Promise.all(
    Array.from({ length: clients }, () =>
      new Deno.Command(CONNECTOR, {
        args: ["-q", "-r", "-n", "100000000", "-T", String(seconds), "127.0.0.1", String(port)],
        stdout: "piped",
      }).output()),
  );
  return runs.reduce((n, r) => n + JSON.parse(dec.decode(r.stdout)).attempts, 0);
}

/** The connections flow records say were opened to `port` (outbound). */
const flowConnections = (events: Ev[], port: number) =>
  events.filter((e) => e.event === "flow" && e.dport === port && e.direction === "outbound")
    .reduce((n, e) => n + (e.connections as number), 0);

bpfTest("--flows: a 2-client storm's connects add up exactly in the flow records, none reported alone", async () => {
  const listener = await spawn(CONNECTOR, ["-L", "-T", "30", "127.0.0.1", "0"]);
  const port = Number(listener.first);
  const lm = new Lightmon(["--flows", "1s", "--output", "json"]);
  try {
    await lm.ready();
    assert.match(lm.stderr, /flows every 1s, counted in the kernel/);
    const made = await storm(port, 2, 3);
    assert.ok(made > 1000, `the storm made ${made} connects`);
    // The interval after the storm's last connect, read at the latest by the stop.
    await new Promise((r) => setTimeout(r, 1200));
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
    const events = lm.events();
    assert.equal(events.filter((e) => e.event === "connect" && e.dport === port).length, 0);
    const flows = events.filter((e) => e.event === "flow" && e.dport === port);
    assert.equal(flowConnections(events, port), made, lm.stderr);
    // Each client is one process: one flow an interval each, at most.
    const pids = new Set(flows.map((f) => f.pid));
    assert.equal(pids.size, 2);
    for (const f of flows) {
      assert.equal(f.flowCause, "interval");
      assert.equal(f.daddr, "127.0.0.1");
      assert.equal(f.exe, `${ROOT}build/connector`);
      assert.deepEqual(f.statuses, { established: f.connections });
      assert.ok(Date.parse(f.intervalStart as string) <= Date.parse(f.firstSeen as string));
      assert.ok(Date.parse(f.lastSeen as string) <= Date.parse(f.intervalEnd as string));
    }
    assert.match(lm.stderr, new RegExp(`flows connections\\.interval ${made}\\b|connections\\.interval \\d+`));
    assert.doesNotMatch(lm.stderr, /ring-full|flows-full/);
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
    await end(listener.child);
  }
});

/**
 * lightmon with its stdout read at `slowBps` bytes a second for `slowMs`, then as
 * fast as it comes; resolves with everything it wrote and its exit line.
 */
function slowlyRead(args: string[], slowBps: number, slowMs: number) {
  const child = new Deno.Command(LIGHTMON, { args, stdout: "piped", stderr: "piped" }).spawn();
  let err = "";
  const errDone = (async () => {
    for await (const c of child.stderr) err += dec.decode(c, { stream: true });
  })();
  const chunks: Uint8Array[] = [];
  const outDone = (async () => {
    const reader = child.stdout.getReader({ mode: "byob" });
    const t0 = performance.now();
    for (;;) {
      const slow = performance.now() - t0 < slowMs;
      // 20 KB a tenth of a second while slow.
      const { value, done } = await reader.read(new Uint8Array(slow ? slowBps / 10 : 1 << 20));
      if (done) break;
      chunks.push(value.slice());
      if (slow) await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stderr: () => err,
    async stop() {
      child.kill("SIGINT");
      const st = await child.status;
      await Promise.all([errDone, outDone]);
      const text = dec.decode(new Uint8Array(chunks.flatMap((c) => [...c])));
      return { code: st.code, events: text.split("\n").filter((l) => l).map((l) => JSON.parse(l) as Ev), err };
    },
  };
}

bpfTest(
  "a reader at 200 KB/s during a storm: what the ring has no room for comes out as flows, nothing is lost",
  async () => {
    const listener = await spawn(CONNECTOR, ["-L", "-T", "60", "127.0.0.1", "0"]);
    const port = Number(listener.first);
    const lm = slowlyRead(["--events", "all", "--output", "json"], 200_000, 12_000);
    try {
      const end = Date.now() + 20_000;
      while (!/lightmon: capture /.test(lm.stderr()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      assert.match(lm.stderr(), /lightmon: capture /);
      await new Promise((r) => setTimeout(r, 1000));
      const made = await storm(port, 2, 3);
      // The slow reading ends 12 s after the start; then lightmon catches up.
      const caughtUp = Date.now() + 30_000;
      await new Promise((r) => setTimeout(r, 10_000));
      let last = -1;
      for (;;) {
        // Settled: the exit line's counters are read at the stop; wait until the stderr stops growing.
        const now = lm.stderr().length;
        if (now === last || Date.now() > caughtUp) break;
        last = now;
        await new Promise((r) => setTimeout(r, 2000));
      }
      const { code, events, err } = await lm.stop();
      assert.equal(code, 0, err);
      const connects = events.filter((e) => e.event === "connect" && e.dport === port).length;
      const asFlows = flowConnections(events, port);
      console.error(`slow reader: ${made} connects: ${connects} records, ${asFlows} in flows`);
      assert.ok(asFlows > 0, `no connection became a flow: the reader never fell behind (${connects} connects)`);
      assert.ok(connects > 0, "some connections were reported one by one");
      assert.equal(connects + asFlows, made, err);
      for (const f of events.filter((e) => e.event === "flow" && e.dport === port)) {
        assert.equal(f.flowCause, "ring-busy");
      }
      // Nothing was dropped: neither by the ring nor by the output.
      assert.match(err, /lightmon: seen \d+ emitted \d+ filtered \d+ dropped 0\b/, err);
      assert.match(err, /flows connections\.ring-busy \d+/);
    } finally {
      await lm.stop().catch(() => {});
      await end(listener.child);
    }
  },
);

bpfTest("bad --flows values are one line and exit 2", async () => {
  for (
    const [value, why] of [
      ["0", /shorter than 100ms/],
      ["25h", /longer than a day/],
      ["soon", /cannot parse duration/],
    ] as const
  ) {
    const lm = new Lightmon(["--flows", value]);
    const st = await lm.exit();
    assert.equal(st.code, 2, lm.stderr);
    const lines = lm.stderr.trim().split("\n");
    assert.equal(lines.length, 1, lm.stderr);
    assert.match(lines[0], /^lightmon: -flows: /);
    assert.match(lines[0], why);
  }
});
