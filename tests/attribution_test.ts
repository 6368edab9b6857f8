/**
 * End-to-end attribution: short-lived processes and containers are named right,
 * and the Docker source survives dockerd going away and coming back.
 */
import assert from "node:assert/strict";
import { dockerTest, runContainer, uniqueName } from "./docker.ts";
import { assertSelf, bpfTest, connect, CONNECTOR, Lightmon, listen, readOnly, run, type Truth } from "./harness.ts";

type Ev = Record<string, unknown>;

function eventFor(events: Ev[], sport: number, dport: number): Ev | undefined {
  return events.find((e) => e.sport === sport && e.dport === dport);
}

/** The cgroup hierarchy the hand-made container cgroup goes in: v2 where mounted there, else v1 memory. */
function cgroupBase(): string {
  try {
    if (Deno.statSync("/sys/fs/cgroup/cgroup.controllers").isFile) return "/sys/fs/cgroup";
  } catch { /* hybrid or v1 */ }
  return "/sys/fs/cgroup/memory";
}

/** Why no cgroup can be made here (a container's read-only cgroup mount), or undefined. */
function cgroupReadOnly(): string | undefined {
  const dir = `${cgroupBase()}/lightmon-probe-${Deno.pid}`;
  try {
    Deno.mkdirSync(dir);
    Deno.removeSync(dir);
    return undefined;
  } catch (e) {
    return e instanceof Error && /Read-only|EROFS/.test(e.message) ? `${cgroupBase()} is read-only` : undefined;
  }
}

bpfTest("50 short-lived processes each get their own pid, exe, args and user", async () => {
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
  const truths: Truth[] = [];
  try {
    await lm.ready();
    for (let i = 0; i < 50; i++) truths.push(...await connect("127.0.0.1", l.port));
    await lm.until((out) => out.split("\n").length > 50, 10_000, "50 events");
  } finally {
    await lm.stop();
    l.close();
  }
  const events = lm.events();
  assert.equal(events.length, 50);
  let right = 0;
  for (const t of truths) {
    const e = eventFor(events, t.sport, l.port);
    assert.ok(e, `event for pid ${t.pid}`);
    assert.equal(e.pid, t.pid);
    assert.equal(e.exe, CONNECTOR);
    assert.deepEqual(e.args, [CONNECTOR, "-n", "1", "127.0.0.1", String(l.port)]);
    assertSelf(e);
    assert.equal(e.procSource, "exec");
    right++;
  }
  assert.equal(right, 50);
});

dockerTest("10 docker run --rm containers that connect and exit are named, with their ids", async () => {
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
  const runs: { name: string; id: string; truth: Truth }[] = [];
  try {
    await lm.ready();
    for (let i = 0; i < 10; i++) {
      const name = uniqueName("lm-short");
      const { id, stdout } = await runContainer(name, ["/bin/connector", "127.0.0.1", String(l.port)]);
      runs.push({ name, id, truth: JSON.parse(stdout.trim()) });
    }
    await lm.until((out) => out.split("\n").length > 10, 10_000, "10 events");
  } finally {
    await lm.stop();
    l.close();
  }
  const events = lm.events();
  for (const r of runs) {
    const e = eventFor(events, r.truth.sport, l.port);
    assert.ok(e, `event for ${r.name}`);
    assert.equal(e.container, r.name);
    assert.equal(e.containerId, r.id);
    assert.equal(e.image, "lightmon-test:latest");
    assert.equal(e.exe, "/bin/connector");
    assert.equal(e.comm, "connector");
    assert.equal(e.user, "", "no host user name for a container's uid");
    assert.notEqual(e.pid, r.truth.pid, "the host pid, not the container's pid 1");
  }
});

dockerTest("Kubernetes labels fill pod and namespace", async () => {
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
  const name = uniqueName("lm-pod");
  let truth: Truth;
  try {
    await lm.ready();
    const labels = ["-l", "io.kubernetes.pod.name=web-7f9c", "-l", "io.kubernetes.pod.namespace=shop"];
    const r = await runContainer(name, ["/bin/connector", "127.0.0.1", String(l.port)], labels);
    truth = JSON.parse(r.stdout.trim());
    await lm.until((out) => out.includes("web-7f9c"), 5000, "the pod's event");
  } finally {
    await lm.stop();
    l.close();
  }
  const e = eventFor(lm.events(), truth!.sport, l.port)!;
  assert.equal(e.pod, "web-7f9c");
  assert.equal(e.namespace, "shop");
  assert.equal(e.container, name);
});

async function dockerdPid(): Promise<number> {
  return Number((await Deno.readTextFile("/var/run/docker.pid")).trim());
}

async function waitDocker(up: boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = (await new Deno.Command("docker", { args: ["info"], stdout: "null", stderr: "null" }).output()).success;
    if (ok === up) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`dockerd did not ${up ? "start" : "stop"} within ${ms}ms`);
}

dockerTest("dockerd stopped and restarted mid-run: events keep flowing and names resume", async () => {
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
  const before = uniqueName("lm-before");
  const after = uniqueName("lm-after");
  let tBefore: Truth, tDuring: Truth, tAfter: Truth;
  try {
    await lm.ready();
    tBefore = JSON.parse((await runContainer(before, ["/bin/connector", "127.0.0.1", String(l.port)])).stdout);
    // Stop the dockerd this machine's CI (or developer) started, by its pid file.
    Deno.kill(await dockerdPid(), "SIGTERM");
    await waitDocker(false, 30_000);
    await lm.until((_o, err) => /docker: lost /.test(err), 10_000, "the outage to be reported");
    [tDuring] = await connect("127.0.0.1", l.port);
    await new Deno.Command("sh", {
      args: ["-c", "nohup dockerd >/var/log/lightmon-test-dockerd.log 2>&1 &"],
    }).output();
    await waitDocker(true, 60_000);
    await lm.until((_o, err) => /docker: connected to .* after /.test(err), 15_000, "the recovery to be reported");
    tAfter = JSON.parse((await runContainer(after, ["/bin/connector", "127.0.0.1", String(l.port)])).stdout);
    await lm.until((out) => out.includes(after), 5000, "the new container's event");
  } finally {
    await lm.stop();
    l.close();
  }
  const events = lm.events();
  assert.equal(eventFor(events, tBefore!.sport, l.port)?.container, before);
  const during = eventFor(events, tDuring!.sport, l.port)!;
  assert.equal(during.pid, tDuring!.pid);
  assert.equal(during.exe, CONNECTOR);
  assert.equal(eventFor(events, tAfter!.sport, l.port)?.container, after);
  const outageLines = lm.stderr.split("\n").filter((x) => /docker: lost /.test(x));
  assert.equal(outageLines.length, 1, "the outage is reported once:\n" + lm.stderr);
}, { inContainer: () => "it stops and restarts the host's dockerd" });

bpfTest("a pid reused by a new process is not attributed to the old one", async () => {
  const dir = await Deno.makeTempDir();
  const other = `${dir}/reuser`;
  await Deno.copyFile(CONNECTOR, other);
  await Deno.chmod(other, 0o755);
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
  let ta: Truth | undefined, tb: Truth | undefined;
  try {
    await lm.ready();
    for (let attempt = 0; attempt < 20 && (!tb || tb.pid !== ta!.pid); attempt++) {
      [ta] = await connect("127.0.0.1", l.port);
      // Make the kernel hand the same pid to the next process: set the last pid
      // given out to one before it, then fork at once.
      const out = await run("sh", [
        "-c",
        `echo ${ta.pid - 1} > /proc/sys/kernel/ns_last_pid; "${other}" 127.0.0.1 ${l.port}`,
      ]);
      tb = JSON.parse(out);
    }
    assert.equal(tb!.pid, ta!.pid, "the kernel did not reuse the pid in 20 tries (a busy machine?)");
    await lm.until((out) => out.includes(`"sport":${tb!.sport},`), 5000, "the second process's event");
  } finally {
    await lm.stop();
    l.close();
  }
  const events = lm.events();
  const ea = eventFor(events, ta!.sport, l.port)!;
  const eb = eventFor(events, tb!.sport, l.port)!;
  assert.equal(ea.pid, eb.pid);
  assert.equal(ea.exe, CONNECTOR);
  assert.equal(eb.exe, other);
  assert.deepEqual(eb.args, [other, "127.0.0.1", String(l.port)]);
  await Deno.remove(dir, { recursive: true });
}, { inContainer: () => readOnly("/proc/sys/kernel/ns_last_pid") });

bpfTest("a forked child that connects without exec (bash /dev/tcp) is named after its parent", async () => {
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
  let childPid = 0, parentPid = 0;
  try {
    await lm.ready();
    // The subshell is a fork of bash that never execs, then opens a TCP connection.
    const out = await run("bash", [
      "-c",
      `echo $$; ( echo $BASHPID; exec 3<>/dev/tcp/127.0.0.1/${l.port} ); sleep 0.2`,
    ]);
    [parentPid, childPid] = out.trim().split("\n").map(Number);
    await lm.until((o) => o.includes(`"pid":${childPid},`), 5000, "the subshell's event");
  } finally {
    await lm.stop();
    l.close();
  }
  const e = lm.events().find((x) => x.pid === childPid)!;
  assert.notEqual(childPid, parentPid);
  assert.equal(e.ppid, parentPid);
  assert.match(String(e.exe), /\/bash$/);
  assert.match((e.args as string[])[0], /bash$/);
  assert.equal((e.args as string[])[1], "-c");
  assert.equal(e.procSource, "exec");
});

bpfTest("a relative exec gets its absolute path from the kernel, even after the process is gone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lightmon-rel-" });
  await Deno.mkdir(`${dir}/work/bin`, { recursive: true });
  await Deno.copyFile(CONNECTOR, `${dir}/work/bin/tool`);
  await Deno.chmod(`${dir}/work/bin/tool`, 0o755);
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
  let t: Truth;
  try {
    await lm.ready();
    // sh execs the relative path itself; the process connects and exits at once.
    t = JSON.parse(await run("sh", ["-c", `cd "${dir}/work" && exec ./bin/../bin/tool 127.0.0.1 ${l.port}`]));
    await lm.until((o) => o.includes(`"sport":${t.sport},`), 5000, "the event");
  } finally {
    await lm.stop();
    l.close();
  }
  const e = eventFor(lm.events(), t!.sport, l.port)!;
  assert.equal(e.exe, `${await Deno.realPath(dir)}/work/bin/tool`);
  assert.equal((e.args as string[])[0], "./bin/../bin/tool");
  assert.equal(e.procSource, "exec");
  await Deno.remove(dir, { recursive: true });
});

bpfTest("another runtime's container is identified from its cgroup and never waits for Docker", async () => {
  // A CRI-containerd-shaped cgroup, made by hand as root (who is trusted: the same tree made in a
  // user's delegated subtree names nothing, see trust_test.ts): the container id and pod uid come
  // from its name. Docker cannot name it, so its events must not wait for Docker.
  const id = "c0ffee".repeat(10) + "abcd";
  const uid = "1b2c3d4e-1111-2222-3333-444455556666";
  const base = cgroupBase();
  const pod = `${base}/kubepods-besteffort-pod${uid.replaceAll("-", "_")}.slice`;
  const scope = `${pod}/cri-containerd-${id}.scope`;
  await Deno.mkdir(scope, { recursive: true });
  const l = listen("127.0.0.1");
  // A wait this long would show: nothing of this container may be held back.
  const lm = new Lightmon(["--output", "json", "--metadata-wait", "10s", "--include", `dport=${l.port}`]);
  try {
    await lm.ready();
    const t0 = Date.now();
    await run("sh", ["-c", `echo $$ > ${scope}/cgroup.procs && exec "${CONNECTOR}" -n 20 127.0.0.1 ${l.port}`]);
    await lm.until((o) => o.split("\n").length > 20, 5000, "20 events without waiting");
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    await lm.stop();
    l.close();
    await Deno.remove(scope).catch(() => {});
    await Deno.remove(pod).catch(() => {});
  }
  const events = lm.events();
  assert.equal(events.length, 20);
  for (const e of events) {
    assert.equal(e.containerId, id);
    assert.equal(e.containerRuntime, "containerd");
    assert.equal(e.container, "");
    assert.equal(e.exe, CONNECTOR);
  }
}, { inContainer: () => cgroupReadOnly() });

bpfTest(
  "a connect still in its handshake when the process execs is named after the program that connected",
  async () => {
    const l = listen("127.0.0.1");
    const rule = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", String(l.port), "-j", "DROP"];
    const lm = new Lightmon(["--output", "json", "--include", `dport=${l.port}`]);
    let t: Truth | undefined;
    try {
      await lm.ready();
      await run("iptables", ["-I", ...rule]);
      try {
        // connector starts a non-blocking connect (held by DROP), then execs sleep
        // with the socket still open: the SYN retransmit after ~1 s reports it pending.
        const child = new Deno.Command(CONNECTOR, {
          args: ["-t", "10", "-e", "/bin/sleep", "127.0.0.1", String(l.port), "2"],
          stdout: "piped",
        }).spawn();
        const out = await child.output();
        t = JSON.parse(new TextDecoder().decode(out.stdout).split("\n")[0]);
        await lm.until((o) => o.includes(`"sport":${t!.sport},`) && o.includes('"aborted"'), 8000, "pending, aborted");
      } finally {
        await run("iptables", ["-D", ...rule]);
      }
    } finally {
      await lm.stop();
      l.close();
    }
    const got = lm.events().filter((e) => e.sport === t!.sport);
    assert.deepEqual(got.map((e) => e.status), ["pending", "aborted"]);
    for (const e of got) {
      assert.equal(e.pid, t!.pid);
      assert.equal(e.comm, "connector");
      assert.equal(e.exe, CONNECTOR, "named after the program it exec'd afterwards");
      assert.deepEqual(e.args, [CONNECTOR, "-t", "10", "-e", "/bin/sleep", "127.0.0.1", String(l.port), "2"]);
      assert.equal(e.procSource, "exec");
    }
  },
);
