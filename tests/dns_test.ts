/**
 * End-to-end: DNS names on connection events, learned from real responses of a
 * real DNS server (Debian's dnsmasq) to real resolvers (getaddrinfo), in a network
 * namespace the test makes (its own resolv.conf) and in Docker containers.
 */
import assert from "node:assert/strict";
import { bpfTest, CONNECTOR, Lightmon, ROOT, run } from "./harness.ts";
import { dnsmasq, end, netns, resolveConnect, spawn } from "./helpers/dns_env.ts";
import { CI_IMAGE, dockerTest, ensureCiImage, uniqueName } from "./docker.ts";

type Ev = Record<string, unknown>;
const DENO = Deno.execPath();
const dec = new TextDecoder();

/**
 * `docker run --rm` a container named `name` whose resolver is `dns`, with the host's /usr (Deno and glibc's
 * resolver libraries) in an empty root, running `cmd` (`/deno` and `/helpers/resolve_connect.ts` are there).
 */
function resolverContainer(name: string, dns: string, cmd: string[], extra: string[] = []): Promise<string> {
  return run("docker", [
    "run",
    "--rm",
    "--name",
    name,
    ...extra,
    "--dns",
    dns,
    "-v",
    "/usr:/usr:ro",
    "-v",
    `${ROOT}tests/helpers:/helpers:ro`,
    "-v",
    `${DENO}:/deno:ro`,
    "-e",
    "DENO_DIR=/tmp/deno",
    CI_IMAGE,
    ...cmd,
  ]);
}

/** The client's connect to the test's listener (not its resolver's TCP connects to port 53). */
const eventOf = (events: Ev[], pid: number) =>
  events.filter((e) => e.pid === pid && e.event === "connect" && e.dport !== 53);

bpfTest(
  "a name resolved in a netns (A, AAAA, behind a CNAME, over TCP) is on the connection's event; after its TTL it is not",
  async () => {
    const ns = await netns();
    const big = Array.from({ length: 40 }, (_, i) => `127.0.1.${i + 1} big.lightmon.test`).join("\n");
    const server = await dnsmasq("127.0.0.1", `127.0.0.2 api.lightmon.test\n::1 v6.lightmon.test\n${big}\n`, {
      netns: ns.name,
      ttl: 1,
      cnames: ["alias.lightmon.test,api.lightmon.test"],
    });
    const l4 = await spawn("ip", ["netns", "exec", ns.name, CONNECTOR, "-L", "-T", "60", "0.0.0.0", "0"]);
    const l6 = await spawn("ip", ["netns", "exec", ns.name, CONNECTOR, "-L", "-T", "60", "::", "0"]);
    const [p4, p6] = [Number(l4.first), Number(l6.first)];
    const metricsPort = 19000 + (Deno.pid % 1000);
    const lm = new Lightmon(["--output", "json", "--metrics-addr", `127.0.0.1:${metricsPort}`]);
    try {
      await lm.ready();
      assert.match(lm.stderr, /; dns names from \/sys\/fs\/cgroup/);
      const api = await resolveConnect(ns.name, "api.lightmon.test", p4);
      const v6 = await resolveConnect(ns.name, "v6.lightmon.test", p6);
      const alias = await resolveConnect(ns.name, "alias.lightmon.test", p4);
      const bigOne = await resolveConnect(ns.name, "big.lightmon.test", p4);
      // The TTL (1 s) and the grace (2 s) pass: the same address, connected to by number, has no name.
      await new Promise((r) => setTimeout(r, 3500));
      const late = await new Deno.Command("ip", {
        args: ["netns", "exec", ns.name, CONNECTOR, "127.0.0.2", String(p4)],
        stdout: "piped",
      }).output();
      const lateTruth = JSON.parse(dec.decode(late.stdout).trim());
      await lm.until((o) => o.includes(`"sport":${lateTruth.sport}`), 5000, "the late connect");
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const st = await lm.stop("SIGINT");
      assert.equal(st.code, 0, lm.stderr);
      const events = lm.events();
      const one = (pid: number) => {
        const found = eventOf(events, pid);
        assert.equal(found.length, 1, JSON.stringify(found));
        return found[0];
      };
      assert.equal(one(api.pid).dnsName, "api.lightmon.test");
      assert.equal(one(api.pid).daddr, "127.0.0.2");
      assert.equal(one(v6.pid).dnsName, "v6.lightmon.test");
      assert.equal(one(v6.pid).daddr, "::1");
      assert.equal(one(alias.pid).dnsName, "alias.lightmon.test"); // the name asked, not the CNAME's target
      assert.equal(one(bigOne.pid).dnsName, "big.lightmon.test");
      assert.equal(one(bigOne.pid).daddr, bigOne.address);
      assert.equal(one(lateTruth.pid).dnsName, "");
      // 40 addresses do not fit a 512-byte UDP answer: the resolver asked again over TCP, and that was read.
      const tcp = Number(/lightmon_dns_responses_total\{transport="tcp"\} (\d+)/.exec(metrics)?.[1] ?? 0);
      assert.ok(tcp >= 1, metrics.split("\n").filter((l) => l.startsWith("lightmon_dns")).join("\n"));
      // The name filter sees them.
      const named = events.filter((e) =>
        typeof e.dnsName === "string" && (e.dnsName as string).endsWith(".lightmon.test")
      );
      assert.equal(named.length, 4);
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      for (const c of [l4.child, l6.child, server.child]) await end(c);
      await Deno.remove(server.hostsFile);
      await ns.close();
    }
  },
);

bpfTest("-include 'dname=*.lightmon.test' keeps only connections to those names", async () => {
  const ns = await netns();
  const server = await dnsmasq("127.0.0.1", "127.0.0.2 api.lightmon.test\n127.0.0.3 other.example\n", {
    netns: ns.name,
  });
  const l4 = await spawn("ip", ["netns", "exec", ns.name, CONNECTOR, "-L", "-T", "60", "0.0.0.0", "0"]);
  const p4 = Number(l4.first);
  const lm = new Lightmon(["--output", "json", "--include", "dname=*.lightmon.test"]);
  try {
    await lm.ready();
    const api = await resolveConnect(ns.name, "api.lightmon.test", p4);
    const other = await resolveConnect(ns.name, "other.example", p4);
    await lm.until((o) => o.includes(`"sport":${api.sport}`), 5000, "the named connect");
    await new Promise((r) => setTimeout(r, 300));
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
    const events = lm.events();
    assert.equal(eventOf(events, api.pid).length, 1);
    assert.equal(eventOf(events, other.pid).length, 0);
    assert.ok(events.every((e) => (e.dnsName as string).endsWith(".lightmon.test")));
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
    for (const c of [l4.child, server.child]) await end(c);
    await Deno.remove(server.hostsFile);
    await ns.close();
  }
});

dockerTest("two containers resolve different names to one address: each event carries its own", async () => {
  await ensureCiImage();
  const gateway = (await run("docker", ["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "bridge"]))
    .trim();
  const server = await dnsmasq(gateway, `${gateway} one.lightmon.test\n${gateway} two.lightmon.test\n`);
  const listener = await spawn(CONNECTOR, ["-L", "-T", "60", "0.0.0.0", "0"]);
  const port = Number(listener.first);
  const names = { one: uniqueName("lm-dns-one"), two: uniqueName("lm-dns-two") };
  const lm = new Lightmon([
    "--output",
    "json",
    "--events",
    "connect,dns",
    "--include",
    `dport=${port} || query=*.lightmon.test`,
  ]);
  try {
    await lm.ready();
    for (const which of ["one", "two"] as const) {
      await resolverContainer(names[which], gateway, [
        "/deno",
        "run",
        "-A",
        "/helpers/resolve_connect.ts",
        `${which}.lightmon.test`,
        String(port),
      ]);
    }
    await lm.until((o) => o.includes(names.two), 10_000, "the second container's event");
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
    const events = lm.events();
    for (const which of ["one", "two"] as const) {
      const mine = events.filter((e) => e.container === names[which] && e.event === "connect");
      assert.equal(mine.length, 1, JSON.stringify(events).slice(0, 600));
      assert.equal(mine[0].daddr, gateway);
      assert.equal(mine[0].dnsName, `${which}.lightmon.test`);
      // The response's event names the container whose process asked (the query was seen leaving it).
      const answered = events.filter((e) =>
        e.event === "dns" && e.query === `${which}.lightmon.test` && e.qtype === "A"
      );
      assert.equal(answered.length, 1, JSON.stringify(answered));
      assert.equal(answered[0].container, names[which]);
      assert.equal(answered[0].exe, "/deno");
    }
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
    for (const c of [listener.child, server.child]) await end(c);
    await Deno.remove(server.hostsFile);
  }
}, { inContainer: () => "creates network namespaces and runs dnsmasq on the host" });

dockerTest(
  "a container on a user-defined network resolves through Docker's embedded resolver: its event is named",
  async () => {
    await ensureCiImage();
    const network = uniqueName("lm-dns-net");
    await run("docker", ["network", "create", network]);
    const gateway = (await run("docker", ["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network]))
      .trim();
    // Docker's resolver at 127.0.0.11, inside the container's namespace, forwards to --dns.
    const server = await dnsmasq(gateway, `${gateway} embedded.lightmon.test\n`);
    const listener = await spawn(CONNECTOR, ["-L", "-T", "60", "0.0.0.0", "0"]);
    const port = Number(listener.first);
    const name = uniqueName("lm-dns-emb");
    const lm = new Lightmon(["--output", "json", "--include", `dport=${port}`]);
    try {
      await lm.ready();
      const resolvConf = await resolverContainer(name, gateway, [
        "/usr/bin/sh",
        "-c",
        `cat /etc/resolv.conf && /deno run -A /helpers/resolve_connect.ts embedded.lightmon.test ${port}`,
      ], ["--network", network]);
      assert.match(resolvConf, /nameserver 127\.0\.0\.11/);
      await lm.until((o) => o.includes(name), 10_000, "the container's event");
      const st = await lm.stop("SIGINT");
      assert.equal(st.code, 0, lm.stderr);
      const mine = lm.events().filter((e) => e.container === name);
      assert.equal(mine.length, 1, JSON.stringify(mine));
      assert.equal(mine[0].dnsName, "embedded.lightmon.test");
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      for (const c of [listener.child, server.child]) await end(c);
      await Deno.remove(server.hostsFile);
      await run("docker", ["network", "rm", network]).catch(() => "");
    }
  },
  { inContainer: () => "runs dnsmasq on the host" },
);

bpfTest("--events dns: one event per response, with the name asked, its type, the code and the answers", async () => {
  const ns = await netns();
  const server = await dnsmasq("127.0.0.1", "127.0.0.2 api.lightmon.test\n", {
    netns: ns.name,
    cnames: ["alias.lightmon.test,api.lightmon.test"],
    local: "lightmon.test",
  });
  const l4 = await spawn("ip", ["netns", "exec", ns.name, CONNECTOR, "-L", "-T", "60", "0.0.0.0", "0"]);
  const lm = new Lightmon(["--output", "json", "--events", "dns", "--include", "query=*.lightmon.test"]);
  try {
    await lm.ready();
    const client = await resolveConnect(ns.name, "alias.lightmon.test", Number(l4.first));
    // A name the server does not have: the resolver gets NXDOMAIN and the client gives up.
    await new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns.name,
        DENO,
        "run",
        "-A",
        `${ROOT}tests/helpers/resolve_connect.ts`,
        "missing.lightmon.test",
        "1",
      ],
      stdout: "null",
      stderr: "null",
    }).output();
    await lm.until((o) => o.includes("missing.lightmon.test"), 5000, "the NXDOMAIN response");
    await new Promise((r) => setTimeout(r, 300));
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
    const events = lm.events();
    assert.ok(events.every((e) => e.event === "dns"), "only DNS events");
    const alias = events.filter((e) => e.query === "alias.lightmon.test" && e.qtype === "A");
    assert.equal(alias.length, 1, JSON.stringify(events));
    assert.equal(alias[0].rcode, "NOERROR");
    assert.deepEqual(alias[0].answers, [
      "CNAME alias.lightmon.test api.lightmon.test",
      "A api.lightmon.test 127.0.0.2",
    ]);
    assert.equal(alias[0].daddr, "127.0.0.1"); // the resolver
    assert.equal(alias[0].dport, 53);
    // The query was seen leaving: who asked, and how long the answer took.
    assert.equal(alias[0].pid, client.pid);
    assert.equal(alias[0].exe, DENO);
    assert.ok(
      (alias[0].latencyUs as number) > 0 && (alias[0].latencyUs as number) < 1_000_000,
      String(alias[0].latencyUs),
    );
    const missing = events.filter((e) => e.query === "missing.lightmon.test" && e.qtype === "A");
    assert.ok(missing.length >= 1, JSON.stringify(events));
    assert.equal(missing[0].rcode, "NXDOMAIN");
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
    for (const c of [l4.child, server.child]) await end(c);
    await Deno.remove(server.hostsFile);
    await ns.close();
  }
});

bpfTest(
  "--events dns without DNS capture is one line and exit 2; --events all without it reports the rest",
  async () => {
    const bad = new Lightmon(["--output", "json", "--events", "dns", "-dns=false"]);
    const st = await bad.exit();
    assert.equal(st.code, 2);
    assert.equal(bad.stderr, "lightmon: --events dns needs DNS capture: drop -dns=false\n");
    const all = new Lightmon(["--output", "json", "--events", "all", "-dns=false", "--duration", "1s"]);
    const st2 = await all.exit();
    assert.equal(st2.code, 0, all.stderr);
    assert.match(all.stderr, /^lightmon: capture \w+.*existing connections: \d+; containers:/);
    assert.doesNotMatch(all.stderr, /dns names/);
  },
);
