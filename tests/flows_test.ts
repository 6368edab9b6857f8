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
    // Both clients run one program in one workload: one flow record an interval, for both processes.
    const intervals = new Set(flows.map((f) => f.intervalEnd));
    assert.equal(intervals.size, flows.length);
    assert.ok(flows.some((f) => f.processes === 2), JSON.stringify(flows.map((f) => f.processes)));
    for (const f of flows) {
      assert.equal(f.flowCause, "interval");
      assert.equal(f.daddr, "127.0.0.1");
      assert.equal(f.exe, `${ROOT}build/connector`);
      // Every connect was established; one whose SYN was retransmitted was pending first, counted both times.
      const { established, pending = 0, ...other } = f.statuses as Record<string, number>;
      assert.deepEqual([established, other], [f.connections, {}], JSON.stringify(f.statuses));
      assert.ok(pending <= established);
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

bpfTest(
  "--flows 100ms: a table turned ~20 times under a storm loses and doubles no count, and every read succeeds",
  async () => {
    const listener = await spawn(CONNECTOR, ["-L", "-T", "30", "127.0.0.1", "0"]);
    const port = Number(listener.first);
    const lm = new Lightmon(["--flows", "100ms", "--output", "json", "--include", `dport=${port}`]);
    try {
      await lm.ready();
      const made = await storm(port, 2, 2);
      await new Promise((r) => setTimeout(r, 300));
      const st = await lm.stop("SIGINT");
      assert.equal(st.code, 0, lm.stderr);
      const flows = lm.events().filter((e) => e.event === "flow" && e.dport === port);
      assert.equal(flowConnections(lm.events(), port), made, lm.stderr);
      // Each turn waits for the kernel (an update of lm_sync): one that failed would say so, and
      // its interval would come out only with the final read.
      assert.doesNotMatch(lm.stderr, /cannot read the kernel's flow table/);
      const intervals = new Set(flows.map((f) => f.intervalEnd));
      assert.ok(intervals.size >= 15, `${intervals.size} intervals with connections in a 2 s storm`);
      assert.equal(intervals.size, flows.length);
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      await end(listener.child);
    }
  },
);

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

/**
 * The connections to `port` that connect records report: a handshake that hung is
 * reported twice, pending and at its outcome (the same pid, source port and
 * connect() time), and is one connection.
 */
function connectionsReported(events: Ev[], port: number): number {
  const pending = new Map<string, number>();
  let n = 0;
  for (const e of events) {
    if (e.event !== "connect" || e.dport !== port) continue;
    const at = Number(e.kernelTime) - (e.latencyUs as number) * 1000;
    const key = `${e.pid}/${e.sport}`;
    if (e.status === "pending") {
      pending.set(key, at);
      n++;
    } else if (Math.abs((pending.get(key) ?? -Infinity) - at) < 1e6) {
      pending.delete(key);
    } else {
      n++;
    }
  }
  return n;
}

bpfTest(
  "a reader at 200 KB/s during a storm: what the ring has no room for comes out as flows, nothing is lost",
  async () => {
    const listener = await spawn(CONNECTOR, ["-L", "-T", "60", "127.0.0.1", "0"]);
    const port = Number(listener.first);
    // A handshake held by a DROP rule: pending while the ring is busy, aborted after lightmon caught up.
    const held = await spawn(CONNECTOR, ["-L", "-T", "60", "127.0.0.1", "0"]);
    const heldPort = Number(held.first);
    const rule = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", String(heldPort), "-j", "DROP"];
    await run("iptables", ["-I", ...rule]);
    const lm = slowlyRead(["--events", "all", "--output", "json"], 200_000, 12_000);
    try {
      const end = Date.now() + 20_000;
      while (!/lightmon: capture /.test(lm.stderr()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      assert.match(lm.stderr(), /lightmon: capture /);
      await new Promise((r) => setTimeout(r, 1000));
      const hung = new Promise((r) => setTimeout(r, 1000)).then(() =>
        new Deno.Command(CONNECTOR, { args: ["-t", "17000", "127.0.0.1", String(heldPort)], stdout: "piped" }).output()
      );
      const made = await storm(port, 2, 3);
      const heldTruth = JSON.parse(dec.decode((await hung).stdout));
      assert.equal(heldTruth.status, "pending");
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
      const connects = connectionsReported(events, port);
      const asFlows = flowConnections(events, port);
      console.error(`slow reader: ${made} connects: ${connects} records, ${asFlows} in flows`);
      assert.ok(asFlows > 0, `no connection became a flow: the reader never fell behind (${connects} connects)`);
      assert.ok(connects > 0, "some connections were reported one by one");
      assert.equal(connects + asFlows, made, err);
      for (const f of events.filter((e) => e.event === "flow" && e.dport === port)) {
        assert.equal(f.flowCause, "ring-busy");
      }
      // The held one's pending went to its flow: so did its outcome, though the ring had room by then.
      const heldFlows = events.filter((e) => e.event === "flow" && e.dport === heldPort);
      assert.deepEqual(events.filter((e) => e.event === "connect" && e.dport === heldPort), []);
      assert.equal(flowConnections(events, heldPort), 1, JSON.stringify(heldFlows));
      const statuses: Record<string, number> = {};
      for (const f of heldFlows) {
        for (const [k, v] of Object.entries(f.statuses as Record<string, number>)) statuses[k] = (statuses[k] ?? 0) + v;
      }
      assert.deepEqual(statuses, { pending: 1, aborted: 1 });
      // Nothing was dropped: neither by the ring nor by the output.
      assert.match(err, /lightmon: seen \d+ emitted \d+ filtered \d+ dropped 0\b/, err);
      assert.match(err, /flows connections\.ring-busy \d+/);
    } finally {
      await run("iptables", ["-D", ...rule]).catch(() => {});
      await lm.stop().catch(() => {});
      await end(listener.child);
      await end(held.child);
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

/** The flow records of one identity (direction, remote end, port, pid), summed over their intervals. */
function flowOf(events: Ev[], m: { pid: number; direction: string; daddr?: string; dport?: number; sport?: number }) {
  const mine = events.filter((e) =>
    e.event === "flow" && e.pid === m.pid && e.direction === m.direction &&
    (m.daddr === undefined || e.daddr === m.daddr) && (m.dport === undefined || e.dport === m.dport) &&
    (m.sport === undefined || e.sport === m.sport)
  );
  assert.ok(mine.length > 0, `no flow for ${JSON.stringify(m)} in ${JSON.stringify(events).slice(0, 1500)}`);
  const statuses: Record<string, number> = {};
  for (const e of mine) {
    for (const [s, n] of Object.entries(e.statuses as Record<string, number>)) statuses[s] = (statuses[s] ?? 0) + n;
  }
  const sum = (k: string) => mine.reduce((n, e) => n + (e[k] as number), 0);
  return {
    connections: sum("connections"),
    closes: sum("closes"),
    bytesSent: sum("bytesSent"),
    bytesReceived: sum("bytesReceived"),
    statuses,
    names: new Set(mine.map((e) => e.dnsName)),
    containers: new Set(mine.map((e) => e.container)),
    exes: new Set(mine.map((e) => e.exe)),
    families: new Set(mine.map((e) => e.addressFamily)),
  };
}

const SEND = 1000; // client to server, per connection
const REPLY = 3000; // server to client

/** flow_peer's server in a netns (or on the host), until ended. */
async function server(host: string, ns?: string) {
  const cmd = ["run", "-A", `${ROOT}tests/helpers/flow_peer.ts`, "serve", host, String(SEND), String(REPLY)];
  const s = ns ? await spawn("ip", ["netns", "exec", ns, DENO, ...cmd]) : await spawn(DENO, cmd);
  return { ...JSON.parse(s.first) as { port: number; pid: number }, child: s.child };
}

/** flow_peer's client in a netns: n connections with bytes each way, then m refused ones. */
async function client(ns: string, name: string, port: number, n: number, closed: number, m: number) {
  const out = await run("ip", [
    "netns",
    "exec",
    ns,
    DENO,
    "run",
    "-A",
    `${ROOT}tests/helpers/flow_peer.ts`,
    "client",
    name,
    String(port),
    String(n),
    String(SEND),
    String(REPLY),
    String(closed),
    String(m),
  ]);
  return JSON.parse(out.trim()) as { pid: number; address: string; established: number; refused: number };
}

bpfTest(
  "--flows names v4 and v6 flows by the DNS answer, with exact outcomes, closes and bytes both ways",
  async () => {
    const ns = await netns();
    const dns = await dnsmasq("127.0.0.1", "127.0.0.2 v4.lightmon.test\n::1 v6.lightmon.test\n", {
      netns: ns.name,
    });
    const s4 = await server("0.0.0.0", ns.name);
    const s6 = await server("::1", ns.name);
    const closed = 1; // tcpmux: nobody listens there in a fresh netns
    const lm = new Lightmon(["--flows", "1s", "--events", "all", "--output", "json"]);
    try {
      await lm.ready();
      const v4 = await client(ns.name, "v4.lightmon.test", s4.port, 7, closed, 3);
      const v6 = await client(ns.name, "v6.lightmon.test", s6.port, 5, closed, 2);
      assert.deepEqual([v4.address, v4.established, v4.refused], ["127.0.0.2", 7, 3]);
      assert.deepEqual([v6.address, v6.established, v6.refused], ["::1", 5, 2]);
      await new Promise((r) => setTimeout(r, 500)); // the servers' closes
      const st = await lm.stop("SIGINT");
      assert.equal(st.code, 0, lm.stderr);
      const events = lm.events();
      for (
        const [c, s, addr, name, n, m, family] of [
          [v4, s4, "127.0.0.2", "v4.lightmon.test", 7, 3, "AF_INET"],
          [v6, s6, "::1", "v6.lightmon.test", 5, 2, "AF_INET6"],
        ] as const
      ) {
        const out = flowOf(events, { pid: c.pid, direction: "outbound", daddr: addr, dport: s.port });
        assert.deepEqual(out.statuses, { established: n });
        assert.equal(out.connections, n);
        assert.equal(out.closes, n);
        assert.equal(out.bytesSent, n * SEND);
        assert.equal(out.bytesReceived, n * REPLY);
        assert.deepEqual([...out.names], [name]);
        assert.deepEqual([...out.families], [family]);
        assert.deepEqual([...out.exes], [DENO]);
        const refused = flowOf(events, { pid: c.pid, direction: "outbound", daddr: addr, dport: closed });
        assert.deepEqual(refused.statuses, { refused: m });
        assert.equal(refused.connections, m);
        assert.equal(refused.closes, 0);
        assert.deepEqual([...refused.names], [name]);
        // The server's side: accepted on its port, bytes the other way round.
        const inbound = flowOf(events, { pid: s.pid, direction: "inbound", sport: s.port });
        assert.deepEqual(inbound.statuses, { established: n });
        assert.equal(inbound.connections, n);
        assert.equal(inbound.closes, n);
        assert.equal(inbound.bytesSent, n * REPLY);
        assert.equal(inbound.bytesReceived, n * SEND);
      }
      // Per connection, nothing: the kernel counted them all.
      const ours = new Set([v4.pid, v6.pid, s4.pid, s6.pid]);
      assert.deepEqual(
        events.filter((e) => ours.has(e.pid as number) && e.event !== "flow" && e.event !== "dns"),
        [],
      );
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      for (const c of [s4.child, s6.child, dns.child]) await end(c);
      await Deno.remove(dns.hostsFile);
      await ns.close();
    }
  },
);

dockerTest("--flows names a container's flows: its name, the name it resolved, exact outcomes and bytes", async () => {
  await ensureCiImage();
  const gateway = (await run("docker", ["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "bridge"]))
    .trim();
  const dns = await dnsmasq(gateway, `${gateway} c4.lightmon.test\n`);
  const s = await server("0.0.0.0");
  const closedListener = Deno.listen({ hostname: "0.0.0.0", port: 0 });
  const closed = (closedListener.addr as Deno.NetAddr).port;
  closedListener.close();
  const name = uniqueName("lm-flows");
  const lm = new Lightmon(["--flows", "1s", "--events", "all", "--output", "json"]);
  try {
    await lm.ready();
    const out = await run("docker", [
      "run",
      "--rm",
      "--name",
      name,
      "--dns",
      gateway,
      "-v",
      "/usr:/usr:ro",
      "-v",
      `${ROOT}tests/helpers:/helpers:ro`,
      "-v",
      `${DENO}:/deno:ro`,
      "-e",
      "DENO_DIR=/tmp/deno",
      CI_IMAGE,
      "/deno",
      "run",
      "-A",
      "/helpers/flow_peer.ts",
      "client",
      "c4.lightmon.test",
      String(s.port),
      "6",
      String(SEND),
      String(REPLY),
      String(closed),
      "4",
    ]);
    const c = JSON.parse(out.trim().split("\n").pop()!) as { pid: number; established: number; refused: number };
    assert.deepEqual([c.established, c.refused], [6, 4]);
    await new Promise((r) => setTimeout(r, 500));
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
    const events = lm.events();
    // The container's pid is its own namespace's: the flow is found by its container and port.
    const mine = events.filter((e) => e.event === "flow" && e.container === name && e.direction === "outbound");
    const pid = mine.find((e) => e.dport === s.port)?.pid as number;
    const est = flowOf(events, { pid, direction: "outbound", daddr: gateway, dport: s.port });
    assert.deepEqual(est.statuses, { established: 6 });
    assert.deepEqual([est.connections, est.closes, est.bytesSent, est.bytesReceived], [6, 6, 6 * SEND, 6 * REPLY]);
    assert.deepEqual([...est.names], ["c4.lightmon.test"]);
    assert.deepEqual([...est.containers], [name]);
    assert.deepEqual([...est.exes], ["/deno"]);
    const refused = flowOf(events, { pid, direction: "outbound", daddr: gateway, dport: closed });
    assert.deepEqual(refused.statuses, { refused: 4 });
    assert.deepEqual([...refused.containers], [name]);
    // The host's server accepted them: an inbound flow on its port, the bytes the other way round.
    const inbound = flowOf(events, { pid: s.pid, direction: "inbound", sport: s.port });
    assert.deepEqual([inbound.connections, inbound.closes, inbound.bytesSent, inbound.bytesReceived], [
      6,
      6,
      6 * REPLY,
      6 * SEND,
    ]);
    assert.deepEqual([...inbound.containers], [""]);
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
    for (const ch of [s.child, dns.child]) await end(ch);
    await Deno.remove(dns.hostsFile);
  }
}, { inContainer: () => "runs dnsmasq on the host's bridge" });
