/**
 * End-to-end: the remote end named by the local container at its address, on real
 * dockerd: both directions, the default bridge and a user network (v4 and v6), an
 * address reused by the next container, a host process's connect, the filter, the
 * map of who talks to whom, and the baseline's workload remotes.
 */
import assert from "node:assert/strict";
import { dockerTest, IMAGE, uniqueName } from "./docker.ts";
import { connect, Lightmon, run, type Truth } from "./harness.ts";

type Ev = Record<string, unknown>;

/** The port every test server listens on, in its own network namespace. */
const PORT = 9107;

/**
 * `docker run -d` a server that accepts and closes every connection on PORT, v4 and v6 (closing
 * first, so that both ends' closes come while both are alive); its addresses.
 */
async function server(name: string, network: string): Promise<{ v4: string; v6: string }> {
  await run("docker", [
    "run",
    "-d",
    "--name",
    name,
    "--network",
    network,
    IMAGE,
    "connector",
    "-L",
    "-T",
    "90",
    "::",
    String(PORT),
  ]);
  const [v4, v6] = (await run("docker", [
    "inspect",
    "-f",
    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}",
    name,
  ])).trim().split(" ");
  return { v4, v6: v6 ?? "" };
}

/** `docker run --rm` a client that connects once to `addr`; its ground truth and its own address. */
async function client(name: string, network: string, addr: string): Promise<Truth & { name: string }> {
  const out = await run("docker", [
    "run",
    "--rm",
    "--name",
    name,
    "--network",
    network,
    IMAGE,
    "connector",
    "-n",
    "1",
    addr,
    String(PORT),
  ]);
  const truth = JSON.parse(out.trim()) as Truth;
  assert.equal(truth.status, "established", `${name}: ${out}`);
  return { ...truth, name };
}

/** The one event of a kind that `pred` picks (a connect: its outcome, not a pending before it). */
function one(events: Ev[], kind: string, pred: (e: Ev) => boolean, what: string): Ev {
  const found = events.filter((e) => e.event === kind && e.status !== "pending" && pred(e));
  assert.equal(found.length, 1, `${what}: ${found.length} ${kind} records\n${JSON.stringify(events).slice(0, 3000)}`);
  return found[0];
}

dockerTest(
  "containers name each other at both ends, on the default bridge and a user network, v4 and v6; a reused address names its new holder",
  async () => {
    const net = uniqueName("lm-peers");
    const v6Subnet = `fd00:6c6d:${(Deno.pid & 0xffff).toString(16)}::/64`;
    const names = { bridgeSrv: uniqueName("lm-srv-b"), netSrv: uniqueName("lm-srv-u") };
    await run("docker", ["network", "create", "--ipv6", "--subnet", v6Subnet, net]);
    const lm = new Lightmon(["--output", "json", "--events", "all", "--include", `rport=${PORT} || lport=${PORT}`]);
    // The filter: another run that keeps only connects to the bridge's server, by its name.
    const picky = new Lightmon([
      "--output",
      "json",
      "--events",
      "connect",
      "--include",
      `peerContainer=${names.bridgeSrv}`,
    ]);
    // The map, and a baseline learned from the same connections.
    const learned = `${await Deno.makeTempDir()}/learned.yaml`;
    const map = new Lightmon([
      "--output",
      "summary",
      "--summary-format",
      "dot",
      "--events",
      "all",
      "--include",
      `rport=${PORT} || lport=${PORT}`,
      "--learn",
      learned,
    ]);
    try {
      await Promise.all([lm.ready(), picky.ready(), map.ready()]);
      // Both servers start after lightmon: their addresses are learned from the event stream.
      const bridgeSrv = await server(names.bridgeSrv, "bridge");
      const netSrv = await server(names.netSrv, net);
      assert.ok(netSrv.v6 !== "", "the user network gives its server an IPv6 address");
      // Two clients one after the other on each network: the second is given the first's address.
      const clients = [
        { ...await client(uniqueName("lm-cli-b1"), "bridge", bridgeSrv.v4), srv: names.bridgeSrv },
        { ...await client(uniqueName("lm-cli-b2"), "bridge", bridgeSrv.v4), srv: names.bridgeSrv },
        { ...await client(uniqueName("lm-cli-u1"), net, netSrv.v4), srv: names.netSrv },
        { ...await client(uniqueName("lm-cli-u6"), net, netSrv.v6), srv: names.netSrv },
      ];
      const host = [
        { ...(await connect(bridgeSrv.v4, PORT))[0], srv: names.bridgeSrv },
        { ...(await connect(netSrv.v6, PORT))[0], srv: names.netSrv },
      ];
      // Each connection: connect, accept and two closes.
      const all = clients.length + host.length;
      await lm.until((o) => (o.match(/"event":"close"/g) ?? []).length >= 2 * all, 15_000, "every close");
      await picky.until((o) => o.split("\n").filter((l) => l.includes(`"dport":${PORT}`)).length >= 3, 10_000, "picky");
      assert.equal((await lm.stop()).code, 0, lm.stderr);
      assert.equal((await picky.stop()).code, 0, picky.stderr);
      await new Promise((r) => setTimeout(r, 500)); // the map's run has had the same records
      assert.equal((await map.stop()).code, 0, map.stderr);
      const events = lm.events();

      for (const c of clients) {
        const conn = one(events, "connect", (e) => e.sport === c.sport && e.dport === PORT, c.name);
        assert.equal(conn.container, c.name);
        assert.equal(conn.peerContainer, c.srv, `${c.name}'s connect names its server`);
        assert.equal(conn.peerImage, IMAGE);
        assert.match(String(conn.peerContainerId), /^[0-9a-f]{64}$/);
        const clientClose = one(events, "close", (e) => e.sport === c.sport && e.dport === PORT, `${c.name} close`);
        assert.equal(clientClose.peerContainer, c.srv);
        const clientAddr = conn.saddr;
        const accept = one(events, "accept", (e) => e.daddr === clientAddr && e.dport === c.sport, `${c.name} accept`);
        assert.equal(accept.container, c.srv);
        assert.equal(accept.peerContainer, c.name, `the server's accept names ${c.name}`);
        const serverClose = one(events, "close", (e) => e.daddr === clientAddr && e.dport === c.sport, "server close");
        assert.equal(serverClose.container, c.srv);
        assert.equal(serverClose.peerContainer, c.name);
      }
      const conns = clients.map((c) => one(events, "connect", (e) => e.sport === c.sport && e.dport === PORT, c.name));
      assert.equal(conns[0].saddr, conns[1].saddr, "the second bridge client was given the first's address");
      assert.equal(conns[3].addressFamily, "AF_INET6");
      assert.equal(conns[3].daddr, netSrv.v6);

      // A host process's connect names the container; the container's accept from the host names nobody.
      for (const h of host) {
        const conn = one(events, "connect", (e) => e.sport === h.sport && e.dport === PORT, "host connect");
        assert.equal(conn.container, "");
        assert.equal(conn.peerContainer, h.srv);
        const accept = one(events, "accept", (e) => e.dport === h.sport && e.container === h.srv, "host accept");
        assert.ok(!("peerContainer" in accept), JSON.stringify(accept));
      }

      // The filter kept exactly the connects to the bridge's server: both clients' and the host's.
      const kept = picky.events();
      assert.deepEqual(
        kept.map((e) => e.sport).sort(),
        [conns[0].sport, conns[1].sport, host[0].sport].sort(),
        JSON.stringify(kept),
      );
      for (const e of kept) assert.equal(e.peerContainer, names.bridgeSrv);

      // The map renders, and draws each client's connections to its server as one edge.
      const dot = new Deno.Command("dot", { args: ["-Tsvg"], stdin: "piped", stdout: "piped", stderr: "piped" })
        .spawn();
      const w = dot.stdin.getWriter();
      await w.write(new TextEncoder().encode(map.stdout));
      await w.close();
      const svg = await dot.output();
      assert.ok(svg.success, new TextDecoder().decode(svg.stderr) + map.stdout);
      const svgText = new TextDecoder().decode(svg.stdout);
      for (const n of [names.bridgeSrv, names.netSrv, ...clients.map((c) => c.name)]) {
        // Graphviz writes a hyphen as its character reference.
        assert.ok(
          svgText.includes(`>${n.replaceAll("-", "&#45;")}</text>`),
          `${n} is a node of the map\n${map.stdout}`,
        );
      }
      const nodeOf = (name: string) => new RegExp(`(n\\d+) \\[shape=box, label="${name}\\\\n`).exec(map.stdout)?.[1];
      for (const c of clients) {
        const edge = `${nodeOf(c.name)} -> ${nodeOf(c.srv)} [label=":${PORT}\\n1 conn"];`;
        assert.ok(map.stdout.includes(edge), `${edge}\n${map.stdout}`);
      }

      // The host program's connections, seen at both ends, are each one edge from the program.
      const hostNode = /(n\d+) \[shape=box, style=rounded, label="[^"]*connector\\nhost"\]/.exec(map.stdout)?.[1];
      for (const h of host) {
        assert.ok(map.stdout.includes(`${hostNode} -> ${nodeOf(h.srv)} [label=":${PORT}\\n1 conn"];`));
      }
      assert.ok(!map.stdout.includes("shape=ellipse"), `every end here is a local workload\n${map.stdout}`);

      // The baseline learned them by workload, not by the addresses they had.
      const baseline = await Deno.readTextFile(learned);
      assert.match(baseline, new RegExp(`/bin/connector -> image ${IMAGE}:${PORT}`));
      assert.match(baseline, new RegExp(`/bin/connector :${PORT} <- image ${IMAGE}`));
      assert.ok(!baseline.includes(bridgeSrv.v4), baseline);
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      await picky.stop("SIGKILL").catch(() => {});
      await map.stop("SIGKILL").catch(() => {});
      await run("docker", ["rm", "-f", names.bridgeSrv, names.netSrv]).catch(() => {});
      await run("docker", ["network", "rm", net]).catch(() => {});
    }
  },
  { inContainer: () => "creates docker networks and containers on the host's dockerd" },
);
