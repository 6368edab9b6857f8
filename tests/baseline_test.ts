/**
 * End-to-end baseline and drift: flows learned from real connections (host
 * processes, containers, pods, names resolved by a real DNS server) and checked
 * in later runs, with the exit codes a cron job alerts on.
 */
import assert from "node:assert/strict";
import { dockerTest, IMAGE, runContainer, uniqueName } from "./docker.ts";
import { bpfTest, connect, CONNECTOR, Lightmon, listen } from "./harness.ts";
import { dnsmasq, end, netns, resolveConnect, spawn } from "./helpers/dns_env.ts";

type Ev = Record<string, unknown>;
const dec = new TextDecoder();

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "lightmon-baseline-" });
}

/** A lightmon run that ends by its own --duration; resolves with it and its exit code once it has. */
async function bounded(args: string[], traffic: () => Promise<void>): Promise<{ lm: Lightmon; code: number }> {
  const lm = new Lightmon(args);
  try {
    await lm.ready();
    await traffic();
    const st = await lm.exit(30_000);
    return { lm, code: st.code };
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
  }
}

/** Events to one of `ports`, by destination port and novelty. */
function verdicts(events: Ev[], ports: number[]): string[] {
  return events
    .filter((e) => ports.includes(e.dport as number) && e.event === "connect")
    .map((e) => `${e.container ? "container" : "host"} ${e.exe} ${e.daddr}:${e.dport} ${e.novel}`)
    .sort();
}

dockerTest(
  "learned from traffic A, a run with A and B flags exactly B; exit 3 with json and summary, 0 when nothing is new",
  async () => {
    const dir = await tempDir();
    const file = `${dir}/baseline.yaml`;
    const l4 = listen("127.0.0.1");
    const l6 = listen("::1");
    const lb = listen("127.0.0.1");
    // Another program: the same client at another path.
    const other = `${dir}/client`;
    await Deno.copyFile(CONNECTOR, other);
    await Deno.chmod(other, 0o755);
    const ports = [l4.port, l6.port, lb.port];
    const include = ports.map((p) => `dport=${p}`).join(" || ");
    const trafficA = async () => {
      await connect("127.0.0.1", l4.port);
      await connect("::1", l6.port);
      // A new container of the image each time: a new id and name, the same workload.
      await runContainer(uniqueName("lm-base"), ["/bin/connector", "127.0.0.1", String(l4.port)]);
    };
    const trafficB = async () => {
      await connect("127.0.0.1", lb.port); // a new port
      await runContainer(uniqueName("lm-base"), ["/bin/connector", "::1", String(l6.port)]); // a flow only the host had
      const out = await new Deno.Command(other, { args: ["127.0.0.1", String(l4.port)], stdout: "piped" }).output();
      assert.ok(out.success); // a new program
    };
    try {
      const learned = await bounded(
        ["--output", "json", "--learn", file, "--duration", "6s", "--include", include],
        trafficA,
      );
      assert.equal(learned.code, 0, learned.lm.stderr);
      assert.match(learned.lm.stderr, /lightmon: learned 3 new flows into .*baseline\.yaml \(3 in all\)/);
      const text = await Deno.readTextFile(file);
      assert.ok(
        text.endsWith(
          `lightmon-baseline: 1\nworkloads:\n  host:\n` +
            `    - ${CONNECTOR} -> 127.0.0.1:${l4.port}\n    - ${CONNECTOR} -> [::1]:${l6.port}\n` +
            `  image ${IMAGE}:\n    - /bin/connector -> 127.0.0.1:${l4.port}\n`,
        ),
        text,
      );
      // Learning the same traffic again changes nothing.
      const again = await bounded(
        ["--output", "json", "--learn", file, "--duration", "6s", "--include", include],
        trafficA,
      );
      assert.match(again.lm.stderr, /lightmon: learned nothing new into .*baseline\.yaml \(3 in all\)/);
      assert.equal(await Deno.readTextFile(file), text);

      const json = await bounded(
        ["--output", "json", "--baseline", file, "--duration", "8s", "--include", include],
        async () => {
          await trafficA();
          await trafficB();
        },
      );
      assert.equal(json.code, 3, json.lm.stderr);
      assert.deepEqual(
        verdicts(json.lm.events(), ports),
        [
          `container /bin/connector 127.0.0.1:${l4.port} false`,
          `container /bin/connector ::1:${l6.port} true`,
          `host ${CONNECTOR} 127.0.0.1:${l4.port} false`,
          `host ${CONNECTOR} 127.0.0.1:${lb.port} true`,
          `host ${CONNECTOR} ::1:${l6.port} false`,
          `host ${other} 127.0.0.1:${l4.port} true`,
        ].sort(),
      );
      assert.match(json.lm.stderr, /lightmon: baseline .*: 3 novel flows in 3 events/);

      const summary = await bounded(
        [
          "--output",
          "summary",
          "--summary-format",
          "json",
          "--baseline",
          file,
          "--duration",
          "8s",
          "-include",
          include,
        ],
        async () => {
          await trafficA();
          await trafficB();
        },
      );
      assert.equal(summary.code, 3, summary.lm.stderr);
      const flows = summary.lm.events().map((f) =>
        `${f.container ? "container" : "host"} ${f.process} ${f.daddr}:${f.dport}`
      );
      assert.deepEqual(
        flows.sort(),
        [
          `container /bin/connector ::1:${l6.port}`,
          `host ${CONNECTOR} 127.0.0.1:${lb.port}`,
          `host ${other} 127.0.0.1:${l4.port}`,
        ].sort(),
      );

      for (const output of ["json", "summary"]) {
        const quiet = await bounded(
          ["--output", output, "--baseline", file, "--duration", "6s", "--include", include],
          trafficA,
        );
        assert.equal(quiet.code, 0, `${output}: ${quiet.lm.stderr}`);
        assert.match(quiet.lm.stderr, /lightmon: baseline .*: nothing novel/);
        if (output === "json") assert.equal(verdicts(quiet.lm.events(), ports).length, 3);
        else assert.doesNotMatch(quiet.lm.stdout, /connector/);
      }
    } finally {
      for (const l of [l4, l6, lb]) l.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

dockerTest("a pod's second replica is the same workload; a pod of another owner is not", async () => {
  const dir = await tempDir();
  const file = `${dir}/baseline.yaml`;
  const l = listen("127.0.0.1");
  const pod = (name: string) =>
    runContainer(uniqueName("lm-pod"), ["/bin/connector", "127.0.0.1", String(l.port)], [
      "-l",
      `io.kubernetes.pod.name=${name}`,
      "-l",
      "io.kubernetes.pod.namespace=shop",
    ]);
  try {
    const learned = await bounded(
      ["--output", "json", "--learn", file, "--duration", "5s", "--include", `dport=${l.port}`],
      async () => void await pod("web-7f9c6d5b8-x2kq4"),
    );
    assert.equal(learned.code, 0, learned.lm.stderr);
    assert.match(
      await Deno.readTextFile(file),
      new RegExp(`  pod shop/web:\n    - /bin/connector -> 127.0.0.1:${l.port}\n`),
    );
    const checked = await bounded(
      ["--output", "json", "--baseline", file, "--duration", "6s", "--include", `dport=${l.port}`],
      async () => {
        await pod("web-7f9c6d5b8-p8zvn");
        await pod("web-5c8d9b7f6-zq5ws"); // after a rollout: a new ReplicaSet hash
        await pod("api-7f9c6d5b8-x2kq4");
      },
    );
    assert.equal(checked.code, 3, checked.lm.stderr);
    const byPod = checked.lm.events().filter((e) => e.dport === l.port).map((e) => `${e.pod} ${e.novel}`).sort();
    assert.deepEqual(byPod, ["api-7f9c6d5b8-x2kq4 true", "web-5c8d9b7f6-zq5ws false", "web-7f9c6d5b8-p8zvn false"]);
  } finally {
    l.close();
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest(
  "a name reached at a new address is not novel; hand-written globs and CIDRs cover what they say and nothing more",
  async () => {
    const dir = await tempDir();
    const file = `${dir}/baseline.yaml`;
    const ns = await netns();
    const hosts = (api: string) =>
      `${api} api.lightmon.test\n127.0.0.5 a.good.lightmon.test\n127.0.0.6 a.bad.lightmon.test\n127.0.0.7 good.lightmon.test.evil\n`;
    let server = await dnsmasq("127.0.0.1", hosts("127.0.0.2"), { netns: ns.name });
    const listener = await spawn("ip", ["netns", "exec", ns.name, CONNECTOR, "-L", "-T", "90", "0.0.0.0", "0"]);
    const port = Number(listener.first);
    const byNumber = async (addr: string) => {
      const out = await new Deno.Command("ip", {
        args: ["netns", "exec", ns.name, CONNECTOR, addr, String(port)],
        stdout: "piped",
      }).output();
      return JSON.parse(dec.decode(out.stdout).trim()).pid as number;
    };
    try {
      const learned = await bounded(
        ["--output", "json", "--learn", file, "--duration", "5s", "--include", `dport=${port}`],
        async () => void await resolveConnect(ns.name, "api.lightmon.test", port),
      );
      assert.equal(learned.code, 0, learned.lm.stderr);
      const text = await Deno.readTextFile(file);
      assert.match(text, new RegExp(` -> api\\.lightmon\\.test:${port}\n`));
      // A person adds a glob for a family of names and a CIDR, as the README shows.
      await Deno.writeTextFile(
        file,
        text + `    - "* -> *.good.lightmon.test:${port}"\n    - ${CONNECTOR} -> 127.0.1.0/24:*\n`,
      );
      // The name moves to another address.
      await end(server.child);
      await Deno.remove(server.hostsFile);
      server = await dnsmasq("127.0.0.1", hosts("127.0.0.3"), { netns: ns.name });
      const pids: Record<string, number> = {};
      const checked = await bounded(
        ["--output", "json", "--baseline", file, "--duration", "9s", "--include", `dport=${port}`],
        async () => {
          const moved = await resolveConnect(ns.name, "api.lightmon.test", port);
          assert.equal(moved.address, "127.0.0.3");
          pids.moved = moved.pid;
          pids.good = (await resolveConnect(ns.name, "a.good.lightmon.test", port)).pid;
          pids.bad = (await resolveConnect(ns.name, "a.bad.lightmon.test", port)).pid;
          pids.evil = (await resolveConnect(ns.name, "good.lightmon.test.evil", port)).pid;
          pids.inCidr = await byNumber("127.0.1.9");
          pids.outOfCidr = await byNumber("127.0.2.9");
        },
      );
      assert.equal(checked.code, 3, checked.lm.stderr);
      const events = checked.lm.events().filter((e) => e.event === "connect" && e.dport === port);
      const novel = Object.fromEntries(
        Object.entries(pids).map(([k, pid]) => [k, events.find((e) => e.pid === pid)?.novel]),
      );
      assert.deepEqual(novel, { moved: false, good: false, bad: true, evil: true, inCidr: false, outOfCidr: true });
    } finally {
      await end(listener.child);
      await end(server.child);
      await Deno.remove(server.hostsFile).catch(() => {});
      await ns.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest("a bad baseline, a learn file in no directory or novel without --baseline: one line, exit 2", async () => {
  const dir = await tempDir();
  try {
    const bad = `${dir}/bad.yaml`;
    await Deno.writeTextFile(bad, "workloads:\n  host:\n    - /usr/bin/curl -> api:https\n");
    const cases: [string[], string][] = [
      [
        ["--baseline", bad],
        `lightmon: ${bad}:3: 'https' is not a port (1-65535), a range (8000-8099) or *: '/usr/bin/curl -> api:https'\n`,
      ],
      [
        ["--baseline", `${dir}/none.yaml`],
        `lightmon: --baseline ${dir}/none.yaml: cannot read the baseline (no such file)\n`,
      ],
      [
        ["--learn", `${dir}/no/such/dir.yaml`],
        `lightmon: --learn ${dir}/no/such/dir.yaml: no directory ${dir}/no/such; create it first\n`,
      ],
      [
        ["-include", "novel=true"],
        "lightmon: the novel filter field needs --baseline FILE (the flows that are not novel)\n",
      ],
    ];
    for (const [args, err] of cases) {
      const lm = new Lightmon(["--output", "json", ...args]);
      const st = await lm.exit();
      assert.equal(st.code, 2, lm.stderr);
      assert.equal(lm.stderr, err);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
