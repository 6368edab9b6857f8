/**
 * End-to-end: lightmon as a root daemon facing dependencies that stall, clients
 * that misbehave and readers that stop reading. Never stuck, every loss counted.
 */
import assert from "node:assert/strict";
import { assertDetached, bpfTest, connect, Lightmon, listen, ROOT } from "./harness.ts";

/** A unix socket that accepts every connection and never answers; `accepted` resolves at the first. */
function silentSocket(): { path: string; accepted: Promise<void>; close: () => void } {
  const dir = Deno.makeTempDirSync({ prefix: "lightmon-silent-" });
  const path = `${dir}/docker.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const held: Deno.Conn[] = [];
  let accepted!: () => void;
  const first = new Promise<void>((r) => accepted = r);
  (async () => {
    for await (const c of listener) {
      held.push(c);
      accepted();
    }
  })().catch(() => {});
  return {
    path,
    accepted: first,
    close() {
      listener.close();
      held.forEach((c) => c.close());
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

bpfTest("SIGINT while start-up waits on Docker ends the run cleanly: exit line, 0, detached", async () => {
  // Start-up is held in Docker's list for a second, the BPF object loading meanwhile: the
  // signal comes before the run has begun, and must not kill lightmon half started.
  const sock = silentSocket();
  const lm = new Lightmon(["--output", "json", "--docker-runtime", sock.path]);
  try {
    await sock.accepted;
    assert.doesNotMatch(lm.stderr, /lightmon: capture /, "signalled before the start-up line");
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, `${st.signal ?? ""} ${lm.stderr}`);
    assert.match(lm.stderr, /lightmon: seen \d+ emitted \d+ filtered \d+ dropped 0\n$/);
  } finally {
    sock.close();
  }
  await assertDetached();
});

bpfTest("a Docker socket that accepts and never answers delays start-up by about a second, no more", async () => {
  const sock = silentSocket();
  const v4 = listen("127.0.0.1");
  const t0 = Date.now();
  const lm = new Lightmon(["--output", "json", "--docker-runtime", sock.path]);
  try {
    await lm.ready(10_000);
    const startMs = Date.now() - t0;
    assert.match(lm.stderr, /lightmon: docker: \S+ not answering \(no answer within 1000 ms\)/);
    assert.match(lm.stderr, /lightmon: capture .*containers: docker \(not answering\)/);
    assert.ok(startMs < 4000, `start-up took ${startMs} ms`);
    const [t] = await connect("127.0.0.1", v4.port);
    await lm.until((out) => out.includes(`"pid":${t.pid},`), 5000, "the connect");
  } finally {
    const t1 = Date.now();
    const st = await lm.stop("SIGTERM");
    assert.equal(st.code, 0, lm.stderr);
    assert.ok(Date.now() - t1 < 3000, "stopping waited on the silent socket");
    v4.close();
    sock.close();
  }
  await assertDetached();
});

/** The exit line's ledger: seen, emitted, filtered, dropped and the causes. */
function ledger(
  stderr: string,
): { seen: number; emitted: number; filtered: number; dropped: number; causes: Record<string, number> } {
  const m = /lightmon: seen (\d+) emitted (\d+) filtered (\d+) dropped (\d+)(?: \(([^)]*)\))?\n$/.exec(stderr);
  assert.ok(m, `no exit line at the end of:\n${stderr}`);
  const causes = Object.fromEntries(
    (m[5] ?? "").split(", ").filter(Boolean).map((c) => {
      const [name, n] = c.split(" ");
      return [name, Number(n)];
    }),
  );
  const l = { seen: +m[1], emitted: +m[2], filtered: +m[3], dropped: +m[4], causes };
  assert.equal(l.seen, l.emitted + l.filtered + l.dropped, `the ledger does not add up: ${m[0]}`);
  assert.equal(Object.values(causes).reduce((a, b) => a + b, 0), l.dropped, `causes do not add up: ${m[0]}`);
  return l;
}

/** lightmon with stdout going to `shellRedirect` (`>/dev/full`) or a pipe nobody reads. */
function spawnWithStdout(args: string[], shellRedirect?: string): { child: Deno.ChildProcess; stderr: () => string } {
  const cmd = shellRedirect
    ? new Deno.Command("sh", {
      args: ["-c", `exec "$0" "$@" ${shellRedirect}`, `${ROOT}lightmon`, ...args],
      stdout: "null",
      stderr: "piped",
      stdin: "null",
    })
    : new Deno.Command(`${ROOT}lightmon`, { args, stdout: "piped", stderr: "piped", stdin: "null" });
  const child = cmd.spawn();
  let err = "";
  const dec = new TextDecoder();
  (async () => {
    for await (const c of child.stderr) err += dec.decode(c, { stream: true });
  })();
  return { child, stderr: () => err };
}

async function waitFor(pred: () => boolean, ms: number, what: string, text: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}:\n${text()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

bpfTest(
  "a reader that stops reading stdout never blocks lightmon: SIGTERM still stops it, drops are counted",
  async () => {
    const l = listen("127.0.0.1");
    const lm = spawnWithStdout(["--output", "json", "--include", `dport=${l.port}`]);
    try {
      await waitFor(() => /lightmon: capture /.test(lm.stderr()), 10_000, "start", lm.stderr);
      // ~700 bytes of JSON per event: far more than the 64 KiB pipe holds.
      await connect("127.0.0.1", l.port, { n: 1500 });
      await new Promise((r) => setTimeout(r, 500));
      const t0 = Date.now();
      lm.child.kill("SIGTERM");
      const st = await Promise.race([
        lm.child.status,
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`no exit:\n${lm.stderr()}`)), 8000)),
      ]);
      assert.equal(st.code, 0, lm.stderr());
      assert.ok(Date.now() - t0 < 5000, `stopping took ${Date.now() - t0} ms`);
      await new Promise((r) => setTimeout(r, 50));
      const got = ledger(lm.stderr());
      assert.ok(got.causes["output-stalled"] > 0, lm.stderr());
      assert.ok(got.emitted + got.causes["output-stalled"] >= 1500, lm.stderr());
    } finally {
      try {
        lm.child.kill("SIGKILL");
      } catch { /* exited */ }
      await lm.child.stdout.cancel().catch(() => {});
      await lm.child.status;
      l.close();
    }
    await assertDetached();
  },
);

bpfTest("a failing stdout (/dev/full) is reported once, survived, and counted as output-failed", async () => {
  const l = listen("127.0.0.1");
  const lm = spawnWithStdout(["--output", "json", "--include", `dport=${l.port}`], ">/dev/full");
  try {
    await waitFor(() => /lightmon: capture /.test(lm.stderr()), 10_000, "start", lm.stderr);
    await connect("127.0.0.1", l.port, { n: 20 });
    await waitFor(() => /output: cannot write/.test(lm.stderr()), 5000, "the write error", lm.stderr);
    await connect("127.0.0.1", l.port, { n: 20 });
    await new Promise((r) => setTimeout(r, 300));
    lm.child.kill("SIGTERM");
    const st = await lm.child.status;
    assert.equal(st.code, 0, lm.stderr());
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(lm.stderr().match(/output: cannot write/g)?.length, 1, lm.stderr());
    const got = ledger(lm.stderr());
    assert.equal(got.causes["output-failed"], 40, lm.stderr());
    assert.equal(got.emitted, 0);
  } finally {
    l.close();
  }
  await assertDetached();
});

bpfTest(
  "the exit line adds up: kernel-filtered, user-filtered and past --count events are all accounted for",
  async () => {
    const keep = listen("127.0.0.1");
    const kernelDropped = listen("127.0.0.1");
    const lm = new Lightmon([
      "--output",
      "json",
      "--count",
      "5",
      "--exclude",
      `dport=${kernelDropped.port} || comm=nobody-has-this-name`,
    ]);
    try {
      await lm.ready();
      assert.match(lm.stderr, new RegExp(`dropping dport ${kernelDropped.port} in the kernel`));
      await connect("127.0.0.1", kernelDropped.port, { n: 4 });
      await connect("127.0.0.1", keep.port, { n: 12 });
      const st = await lm.exit(10_000);
      assert.equal(st.code, 0, lm.stderr);
    } finally {
      keep.close();
      kernelDropped.close();
    }
    const got = ledger(lm.stderr);
    assert.equal(got.emitted, 5);
    assert.ok(got.filtered >= 4, lm.stderr);
    assert.ok((got.causes["past-count"] ?? 0) <= 7, lm.stderr);
    await assertDetached();
  },
);

bpfTest(
  "more dport exclusions than the kernel's table holds: the rest are filtered in user space, and it says so",
  async () => {
    const l = listen("127.0.0.1");
    // 1100 alternatives; the kernel table holds 1024. The listener's port is the last one.
    const others = Array.from({ length: 1100 }, (_, i) => 20000 + i).filter((p) => p !== l.port).slice(0, 1099)
      .map((p) => `dport=${p}`);
    const exclude = [...others, `dport=${l.port}`].join(" || ");
    const lm = new Lightmon(["--output", "json", "--exclude", exclude]);
    try {
      await lm.ready();
      assert.match(
        lm.stderr,
        /dropping 1024 dports in the kernel \(76 more in user space: the kernel's table holds 1024\)/,
      );
      const [t] = await connect("127.0.0.1", l.port, { n: 3 });
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(!lm.stdout.includes(`"pid":${t.pid},`), "an excluded port past the kernel's table was reported");
    } finally {
      const st = await lm.stop("SIGTERM");
      assert.equal(st.code, 0, lm.stderr);
      l.close();
    }
    ledger(lm.stderr);
    await assertDetached();
  },
);

bpfTest(
  "-log_path in a directory others can write (not sticky) is one line and exit 2, before anything loads",
  async () => {
    const dir = Deno.makeTempDirSync();
    Deno.chmodSync(dir, 0o777);
    try {
      const lm = new Lightmon(["-output", "log", "-log_path", dir]);
      const st = await lm.exit(10_000);
      assert.equal(st.code, 2);
      assert.equal(
        lm.stderr,
        `lightmon: -log_path ${dir}: refusing to write logs there: group or others may write it (mode 0777) and it ` +
          "is not a sticky directory of root's; use a directory only root can write (e.g. /var/log/lightmon)\n",
      );
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

bpfTest("SIGHUP re-reads the baseline and never ends the run: the exit line still comes", async () => {
  const dir = Deno.makeTempDirSync();
  const file = `${dir}/baseline.yaml`;
  const l = listen("127.0.0.1");
  Deno.writeTextFileSync(file, "lightmon-baseline: 1\nworkloads:\n  host:\n    - /nothing -> 127.0.0.1:1\n");
  const lm = new Lightmon(["--output", "json", "--baseline", file, "--include", `dport=${l.port}`]);
  try {
    await lm.ready();
    const [first] = await connect("127.0.0.1", l.port);
    await lm.until((o) => o.includes(`"sport":${first.sport},`), 5000, "the first connect");
    // The flow is reviewed and added; SIGHUP has it read.
    Deno.writeTextFileSync(
      file,
      `lightmon-baseline: 1\nworkloads:\n  host:\n    - ${ROOT}build/connector -> 127.0.0.1:${l.port}\n`,
    );
    lm.child.kill("SIGHUP");
    await lm.until((_o, e) => /lightmon: SIGHUP: baseline \S+ re-read \(1 flows\)/.test(e), 5000, "the reload line");
    const [second] = await connect("127.0.0.1", l.port);
    await lm.until((o) => o.includes(`"sport":${second.sport},`), 5000, "the second connect");
    // A broken file keeps the rules in force, and says so.
    Deno.writeTextFileSync(file, "workloads: [\n");
    lm.child.kill("SIGHUP");
    await lm.until((_o, e) => /SIGHUP: baseline \S+ not re-read, the previous one stays/.test(e), 5000, "the refusal");
    const st = await lm.stop("SIGINT");
    assert.equal(st.code, 0, lm.stderr);
    assert.match(lm.stderr, /lightmon: seen \d+ emitted \d+ filtered \d+ dropped 0/);
    const novel = Object.fromEntries(lm.events().map((e) => [e.sport, e.novel]));
    assert.deepEqual([novel[first.sport], novel[second.sport]], [true, false]);
  } finally {
    await lm.stop("SIGKILL").catch(() => {});
    l.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
