/**
 * End-to-end: attacks by local users on what lightmon reports. Each attacker runs
 * as nobody (setpriv --reuid=65534); what it tries must neither hide another
 * user's connections nor put a false name on anything. Floods are bounded in
 * count and time and go to loopback only.
 */
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { assertDetached, bpfTest, closedPort, connect, CONNECTOR, Lightmon, listen, ROOT, run } from "./harness.ts";
import { dockerTest, IMAGE, uniqueName } from "./docker.ts";
import { cgroup2Root } from "../src/capture/cgroup_root.ts";
import { end, spawn } from "./helpers/dns_env.ts";

const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];
const POD_UID = "1b2c3d4e_1111_2222_3333_444455556666";

/**
 * What nobody runs, copied where nobody can reach it: the checkout may sit in a
 * directory only root may enter (/root). Removed when the tests end.
 */
const NOBODY_DIR = Deno.makeTempDirSync({ prefix: "lightmon-nobody-" });
Deno.chmodSync(NOBODY_DIR, 0o755);
const NOBODY_CONNECTOR = `${NOBODY_DIR}/connector`;
Deno.copyFileSync(CONNECTOR, NOBODY_CONNECTOR);
Deno.chmodSync(NOBODY_CONNECTOR, 0o755);
globalThis.addEventListener("unload", () => Deno.removeSync(NOBODY_DIR, { recursive: true }));

/** Deno and the DNS forger, for nobody (copied once, when a test needs them). */
function nobodyDeno(): { deno: string; forge: string; denoDir: string } {
  const deno = `${NOBODY_DIR}/deno`;
  const forge = `${NOBODY_DIR}/forge_dns.ts`;
  const denoDir = `${NOBODY_DIR}/deno-dir`;
  try {
    Deno.statSync(deno);
  } catch {
    Deno.copyFileSync(Deno.execPath(), deno);
    Deno.chmodSync(deno, 0o755);
    Deno.copyFileSync(`${ROOT}tests/helpers/forge_dns.ts`, forge);
    Deno.chmodSync(forge, 0o644);
    Deno.mkdirSync(denoDir);
    Deno.chownSync(denoDir, 65534, 65534);
  }
  return { deno, forge, denoDir };
}

/** A listener on every loopback address that never accepts: past its queue, SYNs are dropped and connects hang. */
async function blackhole(): Promise<{ port: number; close: () => Promise<void> }> {
  const l = await spawn(CONNECTOR, ["-L", "-A", "-b", "1", "-T", "90", "0.0.0.0", "0"]);
  return { port: Number(l.first), close: () => end(l.child) };
}

/** The names in lightmon's kernel table of cgroups (lm_cgroups), as bpftool reads them with the map's BTF. */
async function cgroupTable(): Promise<{ cgroup: string; cgroup_parent: string }[]> {
  const out = await run("bpftool", ["-j", "map", "dump", "name", "lm_cgroups"]);
  const entries = JSON.parse(out) as { formatted?: { value: { cgroup: string; cgroup_parent: string } } }[];
  return entries.map((e) => e.formatted!.value);
}

bpfTest(
  "one user's 70,000 hanging handshakes hide nobody else's connects, and each of its own is reported",
  async () => {
    const hole = await blackhole();
    const lm = new Lightmon(["--output", "json", "-existing=false"]);
    const flood: Deno.ChildProcess[] = [];
    try {
      await lm.ready();
      // 70 processes of nobody's, 1,000 handshakes each, spread over three addresses (ephemeral ports
      // run out at ~28,000 per destination): more than the kernel's whole stash of 65,536.
      for (let i = 0; i < 70; i++) {
        flood.push(
          new Deno.Command("setpriv", {
            args: [
              ...NOBODY,
              ...[
                NOBODY_CONNECTOR,
                "-n",
                "1000",
                "-t",
                "1",
                "-k",
                "-w",
                "60000",
                `127.0.0.${1 + i % 3}`,
                String(hole.port),
              ],
            ],
            stdout: "null",
            stderr: "null",
          }).spawn(),
        );
        // Paced (~10,000 connects a second at most), so that the ring buffer is not what is measured.
        await new Promise((r) => setTimeout(r, 100));
      }
      // Every attempt of nobody's is reported once, pending (bar the two the listener's queue took):
      // at its first SYN retransmit while it had a place in the stash, at connect() once its share was used up.
      let scanned = 0;
      let attempts = 0;
      const nobodyAttempts = () => {
        const out = lm.stdout;
        const end = out.lastIndexOf("\n") + 1;
        for (const l of out.slice(scanned, end).split("\n")) {
          if (l.includes('"uid":65534,')) attempts++;
        }
        scanned = Math.max(scanned, end);
        return attempts;
      };
      const deadline = Date.now() + 60_000;
      while (nobodyAttempts() < 70_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
      assert.equal(nobodyAttempts(), 70_000, lm.stderr);
      // Meanwhile root's connects are reported with their outcomes.
      const refused = await connect("127.0.0.1", closedPort());
      // By its pid: nobody's connects from the other addresses may have the same source port.
      await lm.until((o) => o.includes(`"pid":${refused[0].pid},"tid"`), 5000, "root's refused connect");
      const got = lm.events().filter((e) => e.pid === refused[0].pid);
      assert.deepEqual(got.map((e) => [e.uid, e.status, e.sport]), [[0, "refused", refused[0].sport]]);
      assert.equal(nobodyAttempts(), 70_000, "no attempt reported twice");
    } finally {
      await Promise.all(flood.map(end));
      await hole.close();
    }
    const st = await lm.stop();
    assert.equal(st.code, 0);
    // Nothing was dropped; the attempts past nobody's share were reported at connect() and said so.
    assert.match(lm.stderr, /lightmon: seen \d+ emitted \d+ filtered 0 dropped 0; kernel unstashed 6\d{4}\b/);
    await assertDetached();
  },
);

bpfTest("a DNS response nobody asked for names nothing: nobody's forged answer in its own namespace", async () => {
  const forged = new Uint8Array(
    dnsPacket.encode({
      type: "response",
      id: 4242,
      flags: 0x8180,
      questions: [{ type: "A", name: "api.github.com" }],
      answers: [{ type: "A", name: "api.github.com", ttl: 3600, data: "127.0.66.66" }],
    }),
  );
  const hex = Array.from(forged, (b) => b.toString(16).padStart(2, "0")).join("");
  const lm = new Lightmon(["--output", "json", "-existing=false", "--include", "dport=4443"]);
  try {
    await lm.ready();
    // nobody, root of a user and network namespace of its own (a rootless container): it may bind port 53 there.
    const nobody = nobodyDeno();
    const out = await new Deno.Command("setpriv", {
      args: [
        ...NOBODY,
        ...["unshare", "-Urn", "sh", "-c", 'ip link set lo up && ip addr add 127.0.66.66/32 dev lo && exec "$@"', "sh"],
        ...[nobody.deno, "run", "-A", "--unstable-net", nobody.forge, hex, "127.0.66.66", "4443"],
      ],
      env: { DENO_DIR: nobody.denoDir, NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const truth = JSON.parse(new TextDecoder().decode(out.stdout));
    await lm.until((o) => o.includes(`"sport":${truth.sport},`), 10_000, "nobody's connect");
    const st = await lm.stop();
    assert.equal(st.code, 0);
    const got = lm.events().filter((e) => e.sport === truth.sport && e.daddr === "127.0.66.66");
    assert.deepEqual(got.map((e) => [e.uid, e.status, e.dnsName]), [[65534, "established", ""]]);
    // Counted, with its reason, where the exit line shows it.
    assert.match(lm.stderr, /; .*dns unanswered\.no-query [1-9]/);
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
  }
});

dockerTest(
  "a user's delegated cgroup subtree named after a running container does not make the user that container",
  async () => {
    const root = cgroup2Root();
    assert.ok(root, "a cgroup v2 hierarchy");
    const real = uniqueName("lm-victim");
    const id = (await run("docker", ["run", "-d", "--name", real, IMAGE, "sleep", "60"])).trim();
    // What systemd does for a user session (Delegate=yes): a cgroup of the user's own, files and all.
    const deleg = `${root}/lightmon-deleg-${Deno.pid}`;
    await Deno.mkdir(deleg);
    for (const f of ["", "/cgroup.procs", "/cgroup.threads", "/cgroup.subtree_control"]) {
      await Deno.chown(`${deleg}${f}`, 65534, 65534);
    }
    const fakes = [
      `system.slice/docker-${id}.scope`,
      `docker/${id}`,
      `kubepods-pod${POD_UID}.slice/docker-${id}.scope`,
    ];
    const l = listen("127.0.0.1");
    const lm = new Lightmon(["--output", "json", "-existing=false", "--include", `dport=${l.port}`]);
    let attacker: Deno.ChildProcess | undefined;
    try {
      await lm.ready();
      // nobody, moved into its delegated cgroup as a session would be, makes the fakes and connects from each.
      const script = fakes.map((f) =>
        `mkdir -p ${deleg}/${f} && echo $$ > ${deleg}/${f}/cgroup.procs && ${NOBODY_CONNECTOR} 127.0.0.1 ${l.port}`
      ).join(" && ");
      attacker = new Deno.Command("setpriv", {
        args: [...NOBODY, "sh", "-c", `read go && ${script}`],
        stdin: "piped",
        stdout: "piped",
      }).spawn();
      await Deno.writeTextFile(`${deleg}/cgroup.procs`, String(attacker.pid));
      const w = attacker.stdin.getWriter();
      await w.write(new TextEncoder().encode("go\n"));
      await w.close();
      const out = await attacker.output();
      assert.equal(out.code, 0);
      const truths = new TextDecoder().decode(out.stdout).trim().split("\n").map((t) => JSON.parse(t));
      assert.equal(truths.length, 3);
      // The real container connects too: still named.
      const mine = JSON.parse(await run("docker", ["exec", real, "/bin/connector", "127.0.0.1", String(l.port)]));
      await lm.until((o) => o.includes(`"sport":${mine.sport},`), 10_000, "the container's connect");
      // nobody's cgroups took no place in the kernel's table of cgroup names, which the containers' depend on.
      const table = await cgroupTable();
      assert.ok(table.some((n) => n.cgroup === id), `the container's cgroup is there: ${JSON.stringify(table)}`);
      // Only cgroups root made are there, each with its names: no entry for one of nobody's, named or not.
      assert.ok(table.every((n) => n.cgroup !== ""), JSON.stringify(table));
      assert.ok(!table.some((n) => n.cgroup_parent === `kubepods-pod${POD_UID}.slice`), JSON.stringify(table));
      const st = await lm.stop();
      assert.equal(st.code, 0);
      const events = lm.events();
      for (const t of truths) {
        const e = events.find((x) => x.sport === t.sport);
        assert.ok(e, `nobody's connect from port ${t.sport}`);
        assert.deepEqual([e.uid, e.container, e.containerId, e.pod, e.image], [65534, "", "", "", ""]);
      }
      const theirs = events.find((x) => x.sport === mine.sport)!;
      assert.deepEqual([theirs.container, theirs.containerId], [real, id]);
      assert.match(lm.stderr, /; .*kernel cgroup-not-roots [1-9]/);
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      l.close();
      await run("docker", ["rm", "-f", real]).catch(() => "");
      // Innermost first; the attacker has exited.
      for (const f of fakes) {
        const parts = f.split("/");
        for (let i = parts.length; i > 0; i--) {
          await Deno.remove(`${deleg}/${parts.slice(0, i).join("/")}`).catch(() => {});
        }
      }
      await Deno.remove(deleg).catch(() => {});
    }
  },
  { inContainer: () => "makes cgroups on the host's hierarchy" },
);

bpfTest(
  "a close is reported and names its process however many connections one user holds open meanwhile",
  async () => {
    // Listeners that hold what they accept: four, so that each has room for its share of the flood's descriptors.
    const holders: Deno.ChildProcess[] = [];
    const ports: number[] = [];
    for (let i = 0; i < 4; i++) {
      const h = await spawn(CONNECTOR, ["-L", "-H", "-b", "4096", "-T", "120", "127.0.0.1", "0"]);
      holders.push(h.child);
      ports.push(Number(h.first));
    }
    const port = ports[0];
    // `&& uid=0` keeps the include out of the kernel: it tracks every connection, nobody's flood too.
    const lm = new Lightmon([
      "--output",
      "json",
      "-existing=false",
      "--events",
      "close",
      "--include",
      `dport=${port} && uid=0`,
    ]);
    const flood: Deno.ChildProcess[] = [];
    try {
      await lm.ready();
      // The victim's connection opens first, and stays open while nobody opens 35,000 (70,000 records with the
      // accepts: more than user space keeps opening records for).
      const victim = await spawn(CONNECTOR, ["-k", "-w", "30000", "127.0.0.1", String(port)]);
      const truth = JSON.parse(victim.first);
      const flooders: Promise<{ child: Deno.ChildProcess; first: string }>[] = [];
      for (let i = 0; i < 35; i++) {
        const args = [
          ...NOBODY,
          NOBODY_CONNECTOR,
          "-q",
          "-n",
          "1000",
          "-k",
          "-w",
          "60000",
          "127.0.0.1",
          String(ports[i % 4]),
        ];
        flooders.push(spawn("setpriv", args));
        // Paced, so that the ring buffer keeps up and every opening record reaches user space.
        await new Promise((r) => setTimeout(r, 150));
      }
      // -q -k: each flooder prints its summary once its 1,000 connections are open.
      for (const f of await Promise.all(flooders)) {
        flood.push(f.child);
        assert.equal(JSON.parse(f.first).established, 1000);
      }
      // Now the victim's connection ends: its close must still say who it was.
      await end(victim.child);
      await lm.until((o) => o.includes(`"sport":${truth.sport},`), 10_000, "the victim's close");
      const st = await lm.stop();
      assert.equal(st.code, 0);
      assert.doesNotMatch(lm.stderr, /ring-full/, "every opening record was seen");
      // nobody's own connections past its share of the kernel's connection table get no close record, counted.
      assert.match(lm.stderr, /conns-full [1-9]/);
      const closes = lm.events().filter((e) => e.sport === truth.sport && e.event === "close");
      assert.equal(closes.length, 1);
      assert.deepEqual(
        [closes[0].pid, closes[0].uid, closes[0].exe, closes[0].comm, closes[0].direction],
        [truth.pid, 0, CONNECTOR, "connector", "outbound"],
      );
    } finally {
      await Promise.all([...flood, ...holders].map(end));
      await lm.stop("SIGKILL").catch(() => {});
    }
  },
);

bpfTest("one user's 1,000 listeners shared by 300 processes do not make start-up take more memory", async () => {
  const sharer = await spawn("setpriv", [
    ...[...NOBODY, NOBODY_CONNECTOR, "-L", "-F", "300", "-n", "1000", "-T", "60", "127.0.0.1", "0"],
  ]);
  try {
    assert.equal(sharer.first, "ready");
    const lm = new Lightmon(["--output", "json", "--duration", "1s"]);
    await lm.ready();
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(await Deno.readTextFile(`/proc/${lm.child.pid}/status`))?.[1]) / 1024;
    const st = await lm.exit();
    assert.equal(st.code, 0);
    assert.match(lm.stderr, /existing connections: \d+/);
    // 300,000 (process, socket) pairs once took start-up's peak RSS from 61 to 492 MB; each socket is read once now.
    assert.ok(hwm < 120, `peak RSS at start-up ${hwm.toFixed(1)} MB`);
  } finally {
    await end(sharer.child); // its children die with it (PR_SET_PDEATHSIG)
  }
});

bpfTest(
  "a user's flows to thousands of remote ends take at most their share of the flow table, folded and counted",
  async () => {
    const l = listen("127.0.0.1");
    const lm = new Lightmon(["--flows", "30s", "--output", "json", "-existing=false"]);
    try {
      await lm.ready();
      // nobody: 5,000 refused connects, each to another loopback address (a flow each), from one process.
      const script = "n=0; for i in $(seq 0 19); do for j in $(seq 1 250); do " +
        "true 2>/dev/null <>/dev/tcp/127.1.$i.$j/9 && :; n=$((n+1)); done; done; echo $n";
      const out = await new Deno.Command("setpriv", { args: [...NOBODY, "bash", "-c", script], stdout: "piped" })
        .output();
      assert.equal(new TextDecoder().decode(out.stdout).trim(), "5000");
      const truth = await connect("127.0.0.1", l.port, { n: 50 });
      const st = await lm.stop();
      assert.equal(st.code, 0, lm.stderr);
      const events = lm.events();
      const nobody = events.filter((e) => e.event === "flow" && e.uid === 65534 && e.direction === "outbound");
      const folded = nobody.filter((e) => e.folded === true);
      const own = nobody.filter((e) => e.folded !== true && e.dport === 9);
      // Every attempt is counted, none twice: those past the share in one record with no remote end.
      assert.equal(nobody.reduce((n, e) => n + (e.connections as number), 0), 5000);
      assert.ok(own.length <= 65536 / 16, `nobody holds ${own.length} entries`);
      console.error(`nobody: ${own.length} flows, ${folded[0]?.connections} connections folded`);
      assert.equal(folded.length, 1);
      assert.deepEqual([folded[0].daddr, folded[0].dport, folded[0].pid], ["", 0, 0]);
      assert.equal(folded[0].connections, 5000 - own.length);
      assert.match(lm.stderr, /flows .*folded 1\b/);
      // root's flow is whole, whatever nobody did.
      const root = events.filter((e) => e.event === "flow" && e.pid === truth[0].pid && e.dport === l.port);
      assert.equal(root.reduce((n, e) => n + (e.connections as number), 0), 50);
    } finally {
      await lm.stop("SIGKILL").catch(() => {});
      l.close();
    }
  },
);
