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

/** containerd's socket: the node's own, started for the test when it is not running. */
const CONTAINERD_SOCK = "/run/containerd/containerd.sock";

/** A containerd of the node's (state under /run/containerd, where lightmon reads bundles), ours if we start it. */
async function nodeContainerd(): Promise<Deno.ChildProcess | undefined> {
  try {
    if (Deno.statSync(CONTAINERD_SOCK).isSocket) return undefined;
  } catch { /* not running */ }
  const config = `${await Deno.makeTempDir()}/config.toml`;
  // No CRI plugin: the test plays kubelet's part by hand, as CRI would.
  await Deno.writeTextFile(config, 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n');
  const child = new Deno.Command("containerd", { args: ["-c", config], stdout: "null", stderr: "null" }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      if (Deno.statSync(CONTAINERD_SOCK).isSocket) return child;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGTERM");
  throw new Error("containerd did not start within 10 s");
}

const ctr = (args: string[]) => run("ctr", ["-a", CONTAINERD_SOCK, "-n", "k8s.io", ...args]);

/** A CNI network of the bridge plugin with host-local IPAM, v4 and v6: what a node's CNI config says. */
function cniConfig(name: string, bridge: string, v4: string, v6: string): string {
  return JSON.stringify({
    cniVersion: "0.4.0",
    name,
    type: "bridge",
    bridge,
    isGateway: true,
    ipMasq: false,
    ipam: { type: "host-local", ranges: [[{ subnet: v4 }], [{ subnet: v6 }]] },
  });
}

/** Run a CNI plugin as the runtime does (the sandbox id is its container id); its result. */
async function cni(command: "ADD" | "DEL", config: string, id: string, netns: string): Promise<string> {
  const p = new Deno.Command("/usr/lib/cni/bridge", {
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: `/var/run/netns/${netns}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: "/usr/lib/cni",
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(config));
  await w.close();
  const out = await p.output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`CNI ${command}: ${text}${new TextDecoder().decode(out.stderr)}`);
  return text;
}

const hexId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("");

/** Stop and delete a ctr container of ours, by its id. */
async function ctrRemove(id: string): Promise<void> {
  await ctr(["task", "kill", "-s", "SIGKILL", id]).catch(() => {});
  for (let i = 0; i < 50; i++) {
    if (await ctr(["task", "delete", id]).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await ctr(["container", "delete", id]).catch(() => {});
}

/**
 * A pod as CRI makes one: its network namespace set up by CNI (given the sandbox's
 * id), the sandbox container in it, then the pod's container beside it, each with
 * the annotations CRI writes. The app runs detached, or to its end (its output).
 */
async function pod(config: string, name: string, namespace: string, app: string, cmd: string[], detach: boolean) {
  const id = hexId();
  const appId = hexId();
  const netns = `lm-pod-${id.slice(0, 8)}`;
  await run("ip", ["netns", "add", netns]);
  const result = JSON.parse(await cni("ADD", config, id, netns)) as { ips: { address: string }[] };
  const [v4, v6] = result.ips.map((i) => i.address.split("/")[0]);
  // Until duplicate address detection ends, the pod's v6 address (and the bridge's) answer nothing.
  for (let i = 0; i < 50; i++) {
    const tentative = await run("ip", ["-n", netns, "-6", "addr", "show", "tentative"]) +
      await run("ip", ["-6", "addr", "show", "tentative"]);
    if (tentative.trim() === "") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const annotate = (type: string, more: string[]) =>
    [
      `io.kubernetes.cri.container-type=${type}`,
      `io.kubernetes.cri.sandbox-id=${id}`,
      `io.kubernetes.cri.sandbox-name=${name}`,
      `io.kubernetes.cri.sandbox-namespace=${namespace}`,
      ...more,
    ].flatMap((a) => ["--annotation", a]);
  const inPod = ["--with-ns", `network:/var/run/netns/${netns}`];
  const image = `docker.io/library/${IMAGE}`;
  const started: string[] = [];
  const remove = async () => {
    for (const c of started.reverse()) await ctrRemove(c);
    await cni("DEL", config, id, netns).catch(() => {});
    await run("ip", ["netns", "delete", netns]).catch(() => {});
  };
  try {
    await ctr(["run", "-d", ...inPod, ...annotate("sandbox", []), image, id, "sleep", "120"]);
    started.push(id);
    const appAnnotations = annotate("container", [
      `io.kubernetes.cri.container-name=${app}`,
      `io.kubernetes.cri.image-name=${IMAGE}`,
    ]);
    if (detach) started.push(appId);
    const out = await ctr(["run", detach ? "-d" : "--rm", ...inPod, ...appAnnotations, image, appId, ...cmd]);
    return { id, v4, v6, out, remove };
  } catch (e) {
    await remove();
    throw e;
  }
}

dockerTest(
  "without Docker's word: pods on a CNI bridge are named from the node's host-local reservations and their sandboxes",
  async () => {
    const started = await nodeContainerd();
    const tag = (Deno.pid & 0xffff).toString(16);
    const net = `lm-cni-${tag}`;
    const bridge = `lmcni${tag}`;
    const config = cniConfig(net, bridge, `10.199.${Deno.pid & 0xff}.0/24`, `fd00:199:${tag}::/64`);
    const pods: { remove: () => Promise<void> }[] = [];
    // Docker is told to be absent: what names the pods is what the node's CNI plugin and containerd wrote.
    const lm = new Lightmon([
      "--output",
      "json",
      "--events",
      "all",
      "--include",
      `rport=${PORT} || lport=${PORT}`,
      "--docker-runtime",
      "/nonexistent/docker.sock",
    ]);
    try {
      await run("sh", ["-c", `docker save ${IMAGE} | ctr -a ${CONTAINERD_SOCK} -n k8s.io images import - >/dev/null`]);
      // Docker's FORWARD policy drops bridged traffic; a node's CNI chain would allow its pods' (the firewall plugin).
      await run("iptables", ["-I", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]);
      await lm.ready();
      const db = await pod(
        config,
        "db-0",
        "shop",
        "postgres",
        ["connector", "-L", "-T", "60", "::", String(PORT)],
        true,
      );
      pods.push(db);
      // The web pod's one connect, at once: no time for a periodic scan to see its address.
      const web = await pod(
        config,
        "web-7f9c6d5b8-x2kq4",
        "shop",
        "web",
        ["connector", "-n", "1", db.v4, String(PORT)],
        false,
      );
      pods.push(web);
      const podTruth = JSON.parse(web.out.trim()) as Truth;
      assert.equal(podTruth.status, "established", web.out);
      const host = [
        (await connect(db.v4, PORT, { timeoutMs: 3000 }))[0],
        (await connect(db.v6, PORT, { timeoutMs: 3000 }))[0],
      ];
      await lm.until((o) => (o.match(/"event":"close"/g) ?? []).length >= 6, 15_000, "the closes");
      assert.equal((await lm.stop()).code, 0, lm.stderr);
      const events = lm.events();
      assert.match(lm.stderr, /containers: docker \(no socket at \/nonexistent\/docker\.sock\)/);

      // The web pod's connect names the db pod; the db pod's accept names the web pod; so do their closes.
      const conn = one(events, "connect", (e) => e.sport === podTruth.sport && e.dport === PORT, "pod connect");
      assert.equal(conn.saddr, web.v4);
      assert.equal(conn.peerPod, "db-0");
      assert.equal(conn.peerNamespace, "shop");
      assert.equal(conn.peerContainerId, db.id);
      // Its own end, from its container's bundle: both ends by name.
      assert.equal(conn.pod, "web-7f9c6d5b8-x2kq4", JSON.stringify(conn));
      assert.equal(conn.container, "web");
      assert.equal(
        one(events, "close", (e) => e.sport === podTruth.sport && e.dport === PORT, "pod close").peerPod,
        "db-0",
      );
      for (const kind of ["accept", "close"]) {
        const e = one(events, kind, (e) => e.daddr === web.v4 && e.dport === podTruth.sport, `db's ${kind}`);
        assert.equal(e.peerPod, "web-7f9c6d5b8-x2kq4", JSON.stringify(e));
        assert.equal(e.peerNamespace, "shop");
        assert.equal(e.pod, "db-0");
      }
      // A host process's connects to the pod, v4 and v6.
      for (const h of host) {
        const e = one(events, "connect", (e) => e.sport === h.sport && e.dport === PORT, "host connect");
        assert.equal(e.peerPod, "db-0", JSON.stringify(e));
      }
      assert.equal(one(events, "connect", (e) => e.sport === host[1].sport, "v6").addressFamily, "AF_INET6");
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      for (const p of pods.reverse()) await p.remove();
      await run("ip", ["link", "delete", bridge]).catch(() => {});
      await Deno.remove(`/var/lib/cni/networks/${net}`, { recursive: true }).catch(() => {});
      await run("iptables", ["-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]).catch(() => {});
      if (started) {
        started.kill("SIGTERM"); // ours, by its pid
        await started.status;
      }
    }
  },
  { inContainer: () => "starts containerd and makes network namespaces on the host" },
);
