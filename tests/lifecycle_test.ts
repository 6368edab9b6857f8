/**
 * End-to-end: `--events accept,close` on the real kernel, against connections whose
 * bytes, ends and durations the test makes itself.
 */
import assert from "node:assert/strict";
import { assertDetached, bpfTest, connect, CONNECTOR, Lightmon, listen, ROOT, run } from "./harness.ts";
import { dockerTest, IMAGE, uniqueName } from "./docker.ts";

type Ev = Record<string, unknown>;
const MiB = 1 << 20;
const DENO = Deno.execPath();

/** The transfer server (tests/helpers/xfer_server.ts) in its own process. */
class Server {
  readonly child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  constructor(host: string, recv: number, send: number) {
    this.child = new Deno.Command(DENO, {
      args: ["run", "-A", `${ROOT}tests/helpers/xfer_server.ts`, host, String(recv), String(send)],
      stdout: "piped",
    }).spawn();
    this.#lines = this.child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter()).getReader();
  }
  async next(): Promise<Record<string, unknown>> {
    const { value, done } = await this.#lines.read();
    if (done) throw new Error("server ended early");
    return JSON.parse(value);
  }
  async done(): Promise<void> {
    this.#lines.releaseLock();
    await this.child.stdout.cancel().catch(() => {});
    await this.child.status;
  }
}

function lineSplitter(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, ctl) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) if (p.trim()) ctl.enqueue(p);
    },
  });
}

/** Send `send` bytes, read exactly `recv`, close; the connection's local port. */
async function client(host: string, port: number, send: number, recv: number): Promise<number> {
  const conn = await Deno.connect({ hostname: host, port });
  const sport = (conn.localAddr as Deno.NetAddr).port;
  const out = new Uint8Array(send).fill(0x78);
  for (let off = 0; off < out.length;) off += await conn.write(out.subarray(off));
  const buf = new Uint8Array(64 * 1024);
  let got = 0;
  while (got < recv) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`server closed after ${got} bytes`);
    got += n;
  }
  conn.close();
  return sport;
}

async function lifecycle(args: string[], body: (lm: Lightmon) => Promise<void>): Promise<Ev[]> {
  const lm = new Lightmon(["--output", "json", ...args]);
  try {
    await lm.ready();
    assert.match(lm.stderr, /lightmon: capture /);
    await body(lm);
  } finally {
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
  }
  await assertDetached();
  return lm.events();
}

/** The host's TCP retransmitted segments so far (/proc/net/snmp, both families share it). */
function retransSegs(): number {
  const [names, values] = Deno.readTextFileSync("/proc/net/snmp").split("\n").filter((l) => l.startsWith("Tcp:"));
  return Number(values.split(/\s+/)[names.split(/\s+/).indexOf("RetransSegs")]);
}

const one = (events: Ev[], pred: (e: Ev) => boolean, what: string): Ev => {
  const found = events.filter(pred);
  assert.equal(found.length, 1, `${what}: ${JSON.stringify(found)}`);
  return found[0];
};

for (const host of ["127.0.0.1", "::1"]) {
  bpfTest(
    `${host}: 1 MiB up, 3 MiB down, orderly close: exact bytes both sides, who closed, the duration`,
    async () => {
      let sport = 0;
      let serverPid = 0;
      let measuredMs = 0;
      const retransBefore = retransSegs();
      const events = await lifecycle(["--events", "all"], async (lm) => {
        const server = new Server(host, MiB, 3 * MiB);
        const { port, pid } = await server.next();
        serverPid = pid as number;
        const t0 = performance.now();
        sport = await client(host, port as number, MiB, 3 * MiB);
        assert.equal((await server.next()).closed, true);
        measuredMs = performance.now() - t0;
        await server.done();
        await lm.until(
          (out) => out.split('"event":"close"').length - 1 >= 2 && out.includes(`${sport}`),
          5000,
          "closes",
        );
      });
      const mine = events.filter((e) => e.sport === sport || e.dport === sport);
      const connect = one(mine, (e) => e.event === "connect", "connect");
      const accept = one(mine, (e) => e.event === "accept", "accept");
      const cClose = one(mine, (e) => e.event === "close" && e.direction === "outbound", "client close");
      const sClose = one(mine, (e) => e.event === "close" && e.direction === "inbound", "server close");
      const family = host === "::1" ? "AF_INET6" : "AF_INET";
      // The connect is ours; the accept is the server process's, not whoever the softirq interrupted.
      assert.equal(connect.pid, Deno.pid);
      assert.equal(connect.direction, "outbound");
      assert.equal(accept.pid, serverPid);
      assert.equal(accept.direction, "inbound");
      assert.equal(accept.exe, DENO);
      assert.equal(accept.addressFamily, family);
      assert.equal(accept.dport, sport);
      assert.equal(accept.saddr, host);
      assert.equal(accept.sport, connect.dport);
      // Each close joins its opening record and carries its process.
      assert.equal(cClose.connId, connect.connId);
      assert.equal(sClose.connId, accept.connId);
      assert.notEqual(connect.connId, accept.connId);
      assert.equal(cClose.pid, Deno.pid);
      assert.equal(sClose.pid, serverPid);
      assert.equal(sClose.exe, DENO);
      assert.equal(cClose.status, "closed");
      assert.equal(cClose.bytesSent, MiB);
      assert.equal(cClose.bytesReceived, 3 * MiB);
      assert.equal(sClose.bytesSent, 3 * MiB);
      assert.equal(sClose.bytesReceived, MiB);
      assert.equal(cClose.closedBy, "local");
      assert.equal(sClose.closedBy, "remote");
      assert.equal(cClose.existing, false);
      assert.equal(typeof cClose.rttUs, "number");
      // Loopback retransmits when the machine is busy (a tail loss probe, a pruned receive
      // queue): each side's count is the kernel's, so never more than the host counted meanwhile.
      const retransHost = retransSegs() - retransBefore;
      for (const c of [cClose, sClose]) {
        assert.ok(Number.isInteger(c.retransmits) && (c.retransmits as number) >= 0, `retransmits ${c.retransmits}`);
      }
      assert.ok(
        (cClose.retransmits as number) + (sClose.retransmits as number) <= retransHost,
        `retransmits ${cClose.retransmits}+${sClose.retransmits}, host ${retransHost}`,
      );
      for (const c of [cClose, sClose]) {
        assert.ok(Math.abs((c.durationMs as number) - measuredMs) <= 20, `durationMs ${c.durationMs} vs ${measuredMs}`);
      }
    },
  );
}

bpfTest("a connection reset by the peer says reset; the side that aborted says local", async () => {
  let truth = { sport: 0, pid: 0 };
  let serverPid = 0;
  const events = await lifecycle(["--events", "close"], async (lm) => {
    const server = new Server("127.0.0.1", 1, 0);
    const { port, pid } = await server.next();
    serverPid = pid as number;
    // The client waits until the server has accepted, then aborts with RST (SO_LINGER 0).
    const out = await new Deno.Command(CONNECTOR, { args: ["-k", "-r", "-w", "300", "127.0.0.1", String(port)] })
      .output();
    truth = JSON.parse(new TextDecoder().decode(out.stdout).trim());
    assert.equal((await server.next()).reset, true);
    await server.done();
    await lm.until((o) => o.split('"event":"close"').length - 1 >= 2, 5000, "both closes");
  });
  const mine = events.filter((e) => e.sport === truth.sport || e.dport === truth.sport);
  assert.ok(mine.every((e) => e.event === "close"), `--events close reports only closes: ${JSON.stringify(mine)}`);
  const client = one(mine, (e) => e.direction === "outbound", "client close");
  const server = one(mine, (e) => e.direction === "inbound", "server close");
  assert.equal(client.pid, truth.pid);
  assert.equal(client.closedBy, "local");
  assert.equal(server.pid, serverPid);
  assert.equal(server.closedBy, "reset");
  assert.equal(server.bytesReceived, 0);
});

bpfTest(
  "connections open before the start: both ends reported once as existing, closed later with the flag",
  async () => {
    const server = new Server("127.0.0.1", 5, 7);
    const { port, pid: serverPid } = await server.next();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: port as number });
    const sport = (conn.localAddr as Deno.NetAddr).port;
    let sinceStartMs = 0;
    const events = await lifecycle(["--events", "all"], async (lm) => {
      const started = performance.now();
      await lm.until((o) => o.includes(`"dport":${sport}`), 5000, "the existing accept");
      await conn.write(new TextEncoder().encode("hello"));
      const buf = new Uint8Array(7);
      for (let got = 0; got < 7;) got += (await conn.read(buf.subarray(got))) ?? 7;
      conn.close();
      await server.next();
      sinceStartMs = performance.now() - started;
      await server.done();
      await lm.until((o) => o.split('"event":"close"').length - 1 >= 2, 5000, "both closes");
    });
    const mine = events.filter((e) => e.sport === sport || e.dport === sport);
    const opened = mine.filter((e) => e.status === "existing");
    assert.equal(opened.length, 2, JSON.stringify(mine));
    const out = one(opened, (e) => e.event === "connect", "existing connect");
    const inb = one(opened, (e) => e.event === "accept", "existing accept");
    assert.equal(out.pid, Deno.pid);
    assert.equal(out.direction, "outbound");
    assert.equal(inb.pid, serverPid);
    assert.equal(inb.direction, "inbound");
    for (const [open, dir] of [[out, "outbound"], [inb, "inbound"]] as const) {
      const close = one(mine, (e) => e.event === "close" && e.direction === dir, `${dir} close`);
      assert.equal(close.connId, open.connId);
      assert.equal(close.existing, true);
      assert.equal(close.pid, open.pid);
      // Counted from lightmon's start, which came before the test's clock started.
      assert.ok((close.durationMs as number) >= sinceStartMs - 20, `${close.durationMs} vs ${sinceStartMs}`);
    }
    const cClose = one(mine, (e) => e.event === "close" && e.direction === "outbound", "client close");
    assert.equal(cClose.bytesSent, 5);
    assert.equal(cClose.bytesReceived, 7);
  },
);

bpfTest("the classic tracepoint strategy reports accepts and closes alike", async () => {
  let sport = 0;
  const events = await lifecycle(["--events", "accept,close", "--strategy", "tracepoint"], async (lm) => {
    const server = new Server("::1", 1000, 2000);
    const { port } = await server.next();
    sport = await client("::1", port as number, 1000, 2000);
    await server.next();
    await server.done();
    await lm.until((o) => o.split('"event":"close"').length - 1 >= 2, 5000, "closes");
  });
  const mine = events.filter((e) => e.sport === sport || e.dport === sport);
  assert.deepEqual(mine.map((e) => e.event).sort(), ["accept", "close", "close"]);
  const cClose = one(mine, (e) => e.event === "close" && e.direction === "outbound", "client close");
  assert.equal(cClose.bytesSent, 1000);
  assert.equal(cClose.bytesReceived, 2000);
  assert.equal(cClose.pid, Deno.pid);
});

dockerTest(
  "a server in one container, a client in another: the connect and the accept, each its own container's",
  async () => {
    const serverName = uniqueName("lm-accept-srv");
    const clientName = uniqueName("lm-accept-cli");
    let serverId = "";
    let serverIp = "";
    let truth = { sport: 0 };
    const events = await lifecycle(["--events", "all"], async (lm) => {
      // The bridge network: each container has its own network namespace and address.
      serverId = (await run("docker", [
        "run",
        "-d",
        "--rm",
        "--name",
        serverName,
        IMAGE,
        "/bin/connector",
        "-L",
        "-T",
        "30",
        "0.0.0.0",
        "8080",
      ])).trim();
      try {
        serverIp = (await run("docker", ["inspect", "-f", "{{.NetworkSettings.IPAddress}}", serverName])).trim();
        const deadline = Date.now() + 10_000;
        for (let i = 0;; i++) {
          const out = await run("docker", [
            "run",
            "--rm",
            "--name",
            `${clientName}-${i}`,
            IMAGE,
            "/bin/connector",
            serverIp,
            "8080",
          ]);
          truth = JSON.parse(out.trim());
          if ((truth as { status?: string }).status === "established" || Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 100)); // the listener is not up yet
        }
        await lm.until((o) => o.includes(`"dport":${truth.sport}`), 10_000, "the accept");
      } finally {
        await run("docker", ["rm", "-f", serverName]).catch(() => "");
      }
    });
    const connect = one(
      events,
      (e) => e.event === "connect" && e.sport === truth.sport && e.daddr === serverIp,
      "connect",
    );
    const accept = one(events, (e) => e.event === "accept" && e.dport === truth.sport, "accept");
    assert.match(String(connect.container), new RegExp(`^${clientName}`));
    assert.equal(accept.container, serverName);
    assert.equal(accept.containerId, serverId);
    assert.equal(accept.exe, "/bin/connector");
    assert.equal(accept.direction, "inbound");
    // Joined by addresses: the client's source is the accepted connection's peer.
    assert.equal(accept.saddr, serverIp);
    assert.equal(accept.sport, 8080);
    assert.equal(accept.daddr, connect.saddr);
    assert.notEqual(accept.netns, connect.netns);
  },
);

bpfTest("lightmon's own accepts (its metrics endpoint) are never reported, nor their closes", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  let scraped = "";
  const events = await lifecycle(["--events", "all", "--metrics-addr", `127.0.0.1:${port}`], async (lm) => {
    for (let i = 0; i < 3; i++) scraped = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    // A connection of ours, after the scrapes: once it is reported, so would theirs be.
    const server = new Server("127.0.0.1", 1, 1);
    const { port: p } = await server.next();
    await client("127.0.0.1", p as number, 1, 1);
    await server.next();
    await server.done();
    await lm.until((o) => o.split('"event":"close"').length - 1 >= 2, 5000, "the test connection's closes");
  });
  assert.match(scraped, /lightmon_connection_duration_seconds_count \d+/);
  // The test's own connects to the endpoint are reported (outbound); lightmon's side of them is not.
  assert.ok(events.some((e) => e.direction === "outbound" && e.dport === port && e.pid === Deno.pid));
  const ours = events.filter((e) => e.direction === "inbound" && e.sport === port);
  assert.deepEqual(ours, [], JSON.stringify(ours).slice(0, 500));
});

bpfTest("the table at 80 columns shows each close's bytes both ways and its duration, no line wider", async () => {
  const server = new Server("127.0.0.1", 69_632, 0);
  const { port } = await server.next();
  const lm = new Lightmon(
    ["--output", "table", "--events", "close", "-include", `lport=${port} || rport=${port}`],
    { COLUMNS: "80" },
  );
  try {
    await lm.ready();
    await client("127.0.0.1", port as number, 69_632, 0);
    assert.equal((await server.next()).closed, true);
    await server.done();
    await lm.until((out) => out.split("68K").length - 1 >= 2, 5000, "both closes");
  } finally {
    assert.equal((await lm.stop("SIGINT")).code, 0, lm.stderr);
  }
  const lines = lm.stdout.split("\n").filter((l) => l !== "");
  for (const l of lines) assert.ok([...l].length <= 80, `${[...l].length} columns: ${l}`);
  // The client sent 68K and got nothing back; the server the mirror. Both closed in well under a second.
  assert.match(lm.stdout, /│ -> │ 127\.0\.0\.1:\d+ +│ 68K\/0B \d{1,3}ms +│/);
  assert.match(lm.stdout, /│ <- │ 127\.0\.0\.1:\d+ +│ 0B\/68K \d{1,3}ms +│/);
  await assertDetached();
});

for (const dns of [true, false]) {
  bpfTest(
    `--events close${dns ? "" : " -dns=false"}: the kernel keeps ${
      dns ? "accepts" : "every opening"
    } to itself, and each close names its own end's process`,
    async () => {
      const l = listen("127.0.0.1");
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const metricsPort = (probe.addr as Deno.NetAddr).port;
      probe.close();
      let metrics = "";
      let truth: { sport: number; pid: number }[] = [];
      const events = await lifecycle(
        [
          "--events",
          "close",
          `-dns=${dns}`,
          "-include",
          `lport=${l.port} || rport=${l.port}`,
          "--metrics-addr",
          `127.0.0.1:${metricsPort}`,
        ],
        async (lm) => {
          truth = await connect("127.0.0.1", l.port, { n: 5 });
          await lm.until((o) => o.split('"event":"close"').length - 1 >= 10, 5000, "ten closes");
          metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        },
      );
      l.close();
      const counter = (name: string) =>
        Number(
          new RegExp(`^lightmon_stage_counter\\{stage="join",counter="${name}"\\} (\\d+)$`, "m").exec(metrics)?.[1],
        );
      // With DNS names, each connect still comes (its close takes the name it had); no accept ever does,
      // and no inbound close waits for one.
      assert.equal(counter("joined"), dns ? 5 : 0, metrics);
      assert.equal(counter("waitedForAccept"), 0);
      assert.ok(counter("unjoined") >= (dns ? 5 : 10));
      assert.ok(events.every((e) => e.event === "close"));
      for (const t of truth) {
        const client = one(events, (e) => e.sport === t.sport && e.direction === "outbound", "client close");
        const server = one(events, (e) => e.dport === t.sport && e.direction === "inbound", "server close");
        // The kernel kept each opening's task: the connector that connected, the test that accepted.
        assert.equal(client.pid, t.pid);
        assert.equal(client.exe, CONNECTOR);
        assert.equal(server.pid, Deno.pid);
        assert.equal(server.sport, l.port);
        // Its opening's latency, kept with the connection in the kernel: the handshake, the wait for accept().
        const clientUs = client.latencyUs as number;
        const serverUs = server.latencyUs as number;
        assert.ok(clientUs > 0 && clientUs < 1_000_000, `client latency ${clientUs}`);
        assert.ok(serverUs >= 0 && serverUs < 1_000_000, `server latency ${serverUs}`);
      }
    },
  );
}
