/**
 * End-to-end: the real program on the real kernel against connections whose
 * ground truth the test makes itself.
 */
import assert from "node:assert/strict";
import {
  assertDetached,
  assertSelf,
  bpfTest,
  closedPort,
  connect,
  CONNECTOR,
  LIGHTMON,
  Lightmon,
  listen,
  OBJECT,
  ourPrograms,
  readOnly,
  run,
  type Truth,
} from "./harness.ts";

import { BpfError } from "../ffi/errno.ts";
import { BpfObject, fentryRefused } from "../ffi/libbpf.ts";
import { loadCapture, PROGRAMS, SNAPSHOT_PROGRAM, STRATEGIES } from "../src/capture/loader.ts";

type Ev = Record<string, unknown>;

function byPid(events: Ev[], pid: number): Ev[] {
  return events.filter((e) => e.pid === pid);
}

/** The exact fields every connect event must carry for a ground-truth attempt. */
function assertMatches(e: Ev, t: Truth, want: { daddr: string; dport: number; family: string; status: string }) {
  assert.equal(e.pid, t.pid);
  assert.equal(e.tid, t.tid);
  assert.equal(e.sport, t.sport);
  assert.equal(e.comm, "connector");
  assert.equal(e.exe, CONNECTOR);
  assert.equal(e.daddr, want.daddr);
  assert.equal(e.dport, want.dport);
  assert.equal(e.addressFamily, want.family);
  assert.equal(e.status, want.status);
  assert.equal(e.saddr, want.daddr); // loopback: source and destination match
  assert.equal(e.protocol, "tcp");
  assert.equal(e.direction, "outbound");
  assert.equal(e.uid, 0);
  assert.equal(e.procSource, "exec");
  assertSelf(e);
  assert.match(String(e.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$/);
  assert.match(String(e.kernelTime), /^\d+$/);
  assert.ok(typeof e.latencyUs === "number" && e.latencyUs >= 0);
}

async function captureAll(
  args: string[],
  body: (lm: Lightmon) => Promise<void>,
  env: Record<string, string> = {},
): Promise<Lightmon> {
  const lm = new Lightmon(["--output", "json", ...args], env);
  try {
    await lm.ready();
    assert.match(lm.stderr, /lightmon: capture /);
    await body(lm);
  } finally {
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
  }
  return lm;
}

bpfTest("v4, v6, v4-mapped and refused connects are reported exactly once each, with ground truth", async () => {
  const v4 = listen("127.0.0.1");
  const v6 = listen("::1");
  const refused = closedPort();
  const truths: Record<string, Truth[]> = {};
  const lm = await captureAll([], async (lm) => {
    truths.v4 = await connect("127.0.0.1", v4.port, { n: 20 });
    truths.v6 = await connect("::1", v6.port, { n: 20 });
    truths.mapped = await connect("::ffff:127.0.0.1", v4.port, { n: 5 });
    truths.refused = await connect("127.0.0.1", refused, { n: 5 });
    const total = 50;
    const pids = new Set(Object.values(truths).map((t) => t[0].pid));
    await lm.until(
      (out) => out.split("\n").filter((l) => l && pids.has(JSON.parse(l).pid)).length >= total,
      10_000,
      "50 events",
    );
  });
  v4.close();
  v6.close();
  const events = lm.events();
  const cases = [
    ["v4", "127.0.0.1", v4.port, "AF_INET", "established"],
    ["v6", "::1", v6.port, "AF_INET6", "established"],
    ["mapped", "127.0.0.1", v4.port, "AF_INET", "established"],
    ["refused", "127.0.0.1", refused, "AF_INET", "refused"],
  ] as const;
  for (const [name, daddr, dport, family, status] of cases) {
    const got = byPid(events, truths[name][0].pid);
    assert.equal(got.length, truths[name].length, `${name}: one event per attempt`);
    got.forEach((e, i) => assertMatches(e, truths[name][i], { daddr, dport, family, status }));
    assert.ok(truths[name].every((t) => t.status === status), `${name}: the client saw ${status}`);
  }
  assert.match(lm.stderr, /lightmon: seen \d+ emitted \d+ filtered 0 dropped 0/);
  await assertDetached();
});

bpfTest("a connect held by a DROP rule is reported pending within about a second, then aborted", async () => {
  const v4 = listen("127.0.0.1");
  const rule = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", String(v4.port), "-j", "DROP"];
  let truth: Truth[] = [];
  const lm = await captureAll([], async (lm) => {
    await run("iptables", ["-I", ...rule]);
    try {
      truth = await connect("127.0.0.1", v4.port, { timeoutMs: 2500 });
    } finally {
      await run("iptables", ["-D", ...rule]);
    }
    await lm.until((out) => out.includes(`"sport":${truth[0].sport},`) && out.includes('"aborted"'), 5000, "abort");
  });
  v4.close();
  assert.equal(truth[0].status, "pending");
  const got = byPid(lm.events(), truth[0].pid);
  assert.deepEqual(got.map((e) => e.status), ["pending", "aborted"]);
  assertMatches(got[0], truth[0], { daddr: "127.0.0.1", dport: v4.port, family: "AF_INET", status: "pending" });
  // The first SYN retransmit comes after the initial RTO of one second.
  assert.ok((got[0].latencyUs as number) >= 900_000 && (got[0].latencyUs as number) < 2_000_000, `${got[0].latencyUs}`);
});

bpfTest("a pending IPv6 connect is reported too", async () => {
  const v6 = listen("::1");
  const rule = ["OUTPUT", "-p", "tcp", "-d", "::1", "--dport", String(v6.port), "-j", "DROP"];
  let truth: Truth[] = [];
  const lm = await captureAll([], async (lm) => {
    await run("ip6tables", ["-I", ...rule]);
    try {
      truth = await connect("::1", v6.port, { timeoutMs: 1600 });
    } finally {
      await run("ip6tables", ["-D", ...rule]);
    }
    await lm.until((out) => out.includes('"aborted"'), 5000, "abort");
  });
  v6.close();
  const got = byPid(lm.events(), truth[0].pid);
  assert.deepEqual(got.map((e) => e.status), ["pending", "aborted"]);
  assertMatches(got[0], truth[0], { daddr: "::1", dport: v6.port, family: "AF_INET6", status: "pending" });
});

bpfTest("the classic tracepoint strategy captures the same events when forced", async () => {
  const v4 = listen("127.0.0.1");
  const v6 = listen("::1");
  let t4: Truth[] = [], t6: Truth[] = [];
  const lm = await captureAll([], async (lm) => {
    assert.match(lm.stderr, /lightmon: capture tracepoint[;,]/);
    t4 = await connect("127.0.0.1", v4.port, { n: 3 });
    t6 = await connect("::1", v6.port, { n: 3 });
    await lm.until((out) => out.split("\n").filter((l) => l.includes(`"pid":${t6[0].pid},`)).length === 3);
  }, { LIGHTMON_STRATEGY: "tracepoint" });
  v4.close();
  v6.close();
  byPid(lm.events(), t4[0].pid).forEach((e, i) =>
    assertMatches(e, t4[i], { daddr: "127.0.0.1", dport: v4.port, family: "AF_INET", status: "established" })
  );
  byPid(lm.events(), t6[0].pid).forEach((e, i) =>
    assertMatches(e, t6[i], { daddr: "::1", dport: v6.port, family: "AF_INET6", status: "established" })
  );
  await assertDetached();
});

bpfTest("automatic choice falls back past fentry and kprobe and says so once", async () => {
  const lm = await captureAll([], () => Promise.resolve());
  // This kernel refuses fentry (EPERM) and has no kprobes.
  const lines = lm.stderr.split("\n").filter((l) => l.startsWith("lightmon: capture "));
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /^lightmon: capture tp_btf \(unavailable: fentry: EPERM, kprobe: ENOENT\), existing connections: \d+; (dns names from \/\S+|no dns names \(.*\)); containers: .*; output json$/,
  );
});

bpfTest("the quick fentry probe agrees with loading the fentry program for real", () => {
  // The loader skips a whole-object load when the probe says the kernel refuses
  // fentry: on any kernel, the probe and the real load must give the same answer.
  const object = BpfObject.open(Deno.readFileSync(OBJECT), "lightmon");
  let realEperm = false;
  try {
    for (const p of [...new Set([...Object.values(PROGRAMS).flat(), SNAPSHOT_PROGRAM])]) {
      object.setAutoload(p, p === "lm_fentry_conn");
    }
    object.load();
  } catch (e) {
    if (!(e instanceof BpfError)) throw e;
    realEperm = e.code === "EPERM";
  } finally {
    object.close();
  }
  assert.equal(fentryRefused(), realEperm);
  return Promise.resolve();
});

for (const strategy of ["fentry", "kprobe"]) {
  bpfTest(`forcing ${strategy} where the kernel refuses it is one clear line and exit 2`, async () => {
    const lm = new Lightmon(["--strategy", strategy, "--output", "json"]);
    const st = await lm.exit();
    assert.equal(st.code, 2);
    const lines = lm.stderr.trim().split("\n");
    assert.equal(lines.length, 1, lm.stderr);
    assert.match(lines[0], new RegExp(`^lightmon: The ${strategy} capture strategy does not work on this kernel \\(`));
    assert.match(lines[0], /; try --strategy auto$/);
    assert.equal(lm.stdout, "");
    await assertDetached();
  });
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  bpfTest(`${signal} detaches every program and exits 0`, async () => {
    const lm = new Lightmon(["--output", "json"]);
    await lm.ready();
    assert.ok((await ourPrograms()).length >= 4, "programs attached while running");
    const st = await lm.stop(signal);
    assert.equal(st.code, 0);
    assert.match(lm.stderr, /lightmon: seen \d+ emitted \d+ filtered \d+ dropped 0\n$/);
    await assertDetached();
  });
}

bpfTest("SIGKILL leaves nothing loaded: the kernel releases our unpinned objects", async () => {
  const lm = new Lightmon(["--output", "json"]);
  await lm.ready();
  const st = await lm.stop("SIGKILL");
  assert.equal(st.signal, "SIGKILL");
  await assertDetached();
});

bpfTest("--duration ends the run by itself, cleanly", async () => {
  const t0 = Date.now();
  const lm = new Lightmon(["--output", "json", "--duration", "1500ms"]);
  const st = await lm.exit(15_000);
  assert.equal(st.code, 0, lm.stderr);
  assert.ok(Date.now() - t0 >= 1500);
  assert.match(lm.stderr, /lightmon: seen/);
  await assertDetached();
});

bpfTest("--duration 600h and --stats 600h run as written, not for 34 ms or every millisecond", async () => {
  const lm = new Lightmon(["--output", "json", "--duration", "600h", "--stats", "600h"]);
  await lm.ready();
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(lm.stderr.match(/lightmon: seen/g), null, lm.stderr);
  const st = await lm.stop("SIGTERM");
  assert.equal(st.code, 0, lm.stderr);
  assert.equal(lm.stderr.match(/lightmon: seen/g)?.length, 1, "one exit line");
  await assertDetached();
});

bpfTest("--count N stops after exactly N events, and stdout holds only JSON lines", async () => {
  const v4 = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--count", "7"]);
  await lm.ready();
  await connect("127.0.0.1", v4.port, { n: 20 });
  const st = await lm.exit();
  v4.close();
  assert.equal(st.code, 0, lm.stderr);
  const lines = lm.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 7);
  for (const l of lines) assert.equal(typeof JSON.parse(l), "object");
  await assertDetached();
});

bpfTest("24,000 connects wrap the 4 MiB ring twice: every record arrives whole, none lost", async () => {
  // One copy of the ring is mapped: a record across its end is put together from two
  // pieces. Each wrap leaves one such record; a piece out of place garbles its fields.
  const listener = new Deno.Command(CONNECTOR, { args: ["-L", "-T", "120", "127.0.0.1", "0"], stdout: "piped" })
    .spawn();
  const reader = listener.stdout.getReader();
  const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
  reader.releaseLock();
  const lm = new Lightmon(["--output", "json", "--include", `dport=${port}`]);
  try {
    await lm.ready();
    const truth = await connect("127.0.0.1", port, { n: 24_000, comm: "ringwrap" });
    await lm.until((o) => o.split("\n").length > truth.length, 30_000, "every event");
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
    const events = lm.events();
    assert.equal(events.length, truth.length);
    // The listener closes first, so a client port may come round again: count per port.
    const left = new Map<number, number>();
    for (const t of truth) left.set(t.sport, (left.get(t.sport) ?? 0) + 1);
    const pid = truth[0].pid;
    for (const e of events) {
      const n = left.get(e.sport as number) ?? 0;
      assert.ok(n > 0, `an event for a port no attempt used: ${JSON.stringify(e)}`);
      left.set(e.sport as number, n - 1);
      assert.equal(e.pid, pid);
      assert.equal(e.comm, "ringwrap");
      assert.equal(e.exe, CONNECTOR);
      assert.equal(e.daddr, "127.0.0.1");
      assert.equal(e.dport, port);
      assert.equal(e.status, "established");
    }
    assert.match(lm.stderr, /dropped 0\b/);
  } finally {
    await lm.stop("SIGINT");
    listener.kill("SIGTERM");
    await listener.status;
  }
});

bpfTest("a process named with terminal escapes never reaches the table raw", async () => {
  const v4 = listen("127.0.0.1");
  const hostile = "\x1b]0;pwn\x07\x1b[2J";
  const lm = new Lightmon(["--count", "1"]);
  await lm.ready();
  await connect("127.0.0.1", v4.port, { comm: hostile });
  const st = await lm.exit();
  v4.close();
  assert.equal(st.code, 0, lm.stderr);
  assert.ok(!lm.stdout.includes("\x1b"), "no ESC byte in table output");
  assert.ok(!lm.stdout.includes("\x07"), "no BEL byte in table output");
  assert.match(
    lm.stdout,
    /│ TIME\s+│ USER\s+│ PID\s+│ AF\s+│ LOCAL\s+│ {4}│ REMOTE\s+│ STATUS\s+│ TX\/RX DURATION\s+│ CONTAINER\s+│ PROCESS\s+│/,
  );
});

bpfTest("the tracepoint fallback mounts tracefs itself when it is not mounted", async () => {
  // Unmount it if we can (it may be busy; then the mount path is not exercised here).
  const unmounted = (await new Deno.Command("umount", { args: ["/sys/kernel/tracing"], stderr: "null" }).output())
    .success;
  const v4 = listen("127.0.0.1");
  let truth: Truth[] = [];
  const lm = await captureAll(["--include", `dport=${v4.port}`], async (lm) => {
    truth = await connect("127.0.0.1", v4.port);
    await lm.until((out) => out.includes(`"sport":${truth[0].sport},`), 5000, "event");
  }, { LIGHTMON_STRATEGY: "tracepoint" });
  v4.close();
  if (unmounted) assert.match(lm.stderr, /lightmon: capture tracepoint, mounted tracefs on \/sys\/kernel\/tracing[;,]/);
  assert.ok(Deno.statSync("/sys/kernel/tracing/events").isDirectory);
  assert.equal(lm.events().length, 1);
});

bpfTest("a second SIGINT exits at once", async () => {
  const lm = new Lightmon(["--output", "json"]);
  await lm.ready();
  lm.child.kill("SIGINT");
  lm.child.kill("SIGINT");
  const st = await lm.exit(5000);
  assert.ok(st.code === 0 || st.code === 130, `exit ${st.code}`);
  await assertDetached();
});

bpfTest("without root privileges: one line naming the fix, exit 2", async () => {
  const denoDir = await Deno.makeTempDir();
  await Deno.chmod(denoDir, 0o777);
  const lm = new Lightmon(
    ["--reuid=65534", "--regid=65534", "--clear-groups", "--", LIGHTMON, "--output", "json"],
    { DENO_DIR: denoDir, HOME: denoDir },
    "setpriv",
  );
  const st = await lm.exit();
  await Deno.remove(denoDir, { recursive: true });
  assert.equal(st.code, 2);
  assert.equal(
    lm.stderr,
    "lightmon: lightmon needs root: run it with sudo, or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE\n",
  );
});

bpfTest("a missing libbpf.so.1 names the package to install, exit 2", async () => {
  const lm = new Lightmon(["--output", "json"], { LIGHTMON_LIBBPF: "/nonexistent/libbpf.so.1" });
  const st = await lm.exit();
  assert.equal(st.code, 2);
  assert.match(
    lm.stderr,
    /^lightmon: Cannot load libbpf\.so\.1 \(.*\); install it: Debian\/Ubuntu 'apt-get install libbpf1', Fedora\/RHEL 'dnf install libbpf'\n$/,
  );
});

bpfTest("--version reports which strategies this kernel allows", async () => {
  const lm = new Lightmon(["--version"]);
  const st = await lm.exit();
  assert.equal(st.code, 0);
  assert.match(lm.stdout, /^lightmon \d+\.\d+\.\d+ \(event schema 1\)\nlibbpf \d+\.\d+\n/);
  assert.match(lm.stdout, / {2}fentry: no \(EPERM\)\n {2}kprobe: no \(ENOENT\)\n {2}tp_btf: yes\n {2}tracepoint: yes/);
  await assertDetached();
});

bpfTest("a connection established before start is reported once as existing; its accepted side is not", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (server.addr as Deno.NetAddr).port;
  // A client process that connects, then holds the connection open.
  const holder = new Deno.Command(CONNECTOR, {
    args: ["-k", "-w", "6000", "127.0.0.1", String(port)],
    stdout: "piped",
  }).spawn();
  const accepted = await server.accept();
  const reader = holder.stdout.getReader();
  const truth = JSON.parse(new TextDecoder().decode((await reader.read()).value)) as Truth;
  reader.releaseLock();
  try {
    const lm = await captureAll(["--include", `dport=${port} || sport=${port}`], async (lm) => {
      assert.match(lm.stderr, /existing connections: \d+;/);
      await lm.until((out) => out.includes('"existing"'), 5000, "the existing connection");
      await new Promise((r) => setTimeout(r, 300));
    });
    const events = lm.events();
    assert.equal(events.length, 1, JSON.stringify(events));
    const e = events[0];
    assert.equal(e.status, "existing");
    assert.equal(e.pid, truth.pid);
    assert.equal(e.sport, truth.sport);
    assert.equal(e.dport, port);
    assert.equal(e.comm, "connector");
    assert.equal(e.exe, CONNECTOR);
    assert.equal(e.procSource, "proc");
    const off = await captureAll(["-existing=false", "--include", `dport=${port}`], async () => {
      await new Promise((r) => setTimeout(r, 300));
    });
    assert.equal(off.events().length, 0);
  } finally {
    accepted.close();
    server.close();
    holder.kill("SIGTERM");
    await holder.status;
  }
});

// Kernels before 5.11 have no BTF-typed current task: their programs read its fields with
// probe reads (lm_cfg.task_btf 0), which LIGHTMON_TASK_BTF=0 forces here.
for (const taskBtf of ["1", "0"]) {
  bpfTest(
    `with the task read ${taskBtf === "1" ? "as plain loads" : "by probe reads"}, connects and closes name the process`,
    async () => {
      const v4 = listen("127.0.0.1");
      const v6 = listen("::1");
      const mntns = Number(/\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/mnt"))![1]);
      let t4: Truth[] = [], t6: Truth[] = [];
      const lm = await captureAll(["--events", "connect,close"], async (lm) => {
        t4 = await connect("127.0.0.1", v4.port, { n: 3 });
        t6 = await connect("::1", v6.port, { n: 3 });
        await lm.until(
          (out) => out.split("\n").filter((l) => l.includes(`"pid":${t6[0].pid},`)).length === 6,
          10_000,
          "three connects and three closes of the v6 client",
        );
      }, { LIGHTMON_TASK_BTF: taskBtf });
      v4.close();
      v6.close();
      for (
        const [t, daddr, port, family] of [[t4, "127.0.0.1", v4.port, "AF_INET"], [
          t6,
          "::1",
          v6.port,
          "AF_INET6",
        ]] as const
      ) {
        const got = byPid(lm.events(), t[0].pid);
        const connects = got.filter((e) => e.event === "connect");
        const closes = got.filter((e) => e.event === "close");
        assert.equal(connects.length, 3);
        assert.equal(closes.length, 3);
        connects.forEach((e, i) => assertMatches(e, t[i], { daddr, dport: port, family, status: "established" }));
        for (const e of got) {
          assert.equal(e.ppid, Deno.pid, "the connector's parent is this test");
          assert.equal(e.mntns, mntns);
          assert.equal(e.comm, "connector");
        }
        assert.deepEqual(closes.map((e) => e.sport).sort(), t.map((x) => x.sport).sort());
      }
    },
  );
}

bpfTest(
  "the programs' statistics come from the kernel: runs and run time while bpf_stats is on, skipped runs",
  async () => {
    // The statistics are read from bpf_prog_info at fixed offsets: runs that grow with the
    // traffic, at a plausible time each, say the offsets are the kernel's.
    const sysctl = "/proc/sys/kernel/bpf_stats_enabled";
    const was = Deno.readTextFileSync(sysctl).trim();
    const loaded = await loadCapture({
      image: Deno.readFileSync(OBJECT),
      strategies: STRATEGIES,
      ipv4Only: false,
      selfPid: Deno.pid,
    });
    const l = listen("127.0.0.1");
    try {
      Deno.writeTextFileSync(sysctl, "1");
      const before = loaded.object.programStats();
      await connect("127.0.0.1", l.port, { n: 20 });
      const after = loaded.object.programStats();
      const runs = after.runs - before.runs;
      assert.ok(runs >= 20n, `${runs} runs for 20 connects`);
      const perRun = (after.runTimeNs - before.runTimeNs) / runs;
      assert.ok(perRun > 0n && perRun < 1_000_000n, `${perRun} ns a run`);
      assert.ok(after.recursionMisses >= before.recursionMisses && after.recursionMisses < 1_000_000n);
    } finally {
      Deno.writeTextFileSync(sysctl, was);
      l.close();
      loaded.object.close();
    }
    await assertDetached();
  },
  { inContainer: () => readOnly("/proc/sys/kernel/bpf_stats_enabled") },
);
