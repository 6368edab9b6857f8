/**
 * The one-file distribution, used as a newcomer would: dist/lightmon copied alone
 * into an empty directory and run with an empty environment.
 */
import assert from "node:assert/strict";
import { bpfTest, connect, Lightmon, listen, ROOT } from "./harness.ts";

const DIST = `${ROOT}dist/lightmon`;
const PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

async function runDist(bin: string, args: string[], extraEnv: string[] = []) {
  const t0 = performance.now();
  const out = await new Deno.Command("env", { args: ["-i", PATH, ...extraEnv, bin, ...args] }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    ms: performance.now() - t0,
  };
}

async function freshCopy(): Promise<{ dir: string; bin: string; cache: string }> {
  const dir = await Deno.makeTempDir({ prefix: "lightmon-dist-" });
  const bin = `${dir}/lightmon`;
  await Deno.copyFile(DIST, bin);
  await Deno.chmod(bin, 0o755);
  return { dir, bin, cache: `${dir}/cache` };
}

bpfTest("dist/lightmon runs alone with an empty environment: --version, --help, a capture", async () => {
  const { dir, bin, cache } = await freshCopy();
  try {
    const env = [`LIGHTMON_CACHE=${cache}`];
    const first = await runDist(bin, ["--help"], env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^lightmon \d+\.\d+\.\d+ - container-aware TCP connection monitor/);
    const second = await runDist(bin, ["--help"], env);
    assert.equal(second.code, 0);
    console.error(
      `dist: ${Deno.statSync(bin).size} bytes; first run ${first.ms.toFixed(0)} ms, second ${second.ms.toFixed(0)} ms`,
    );
    const version = await runDist(bin, ["--version"], env);
    assert.match(version.stdout, /^lightmon \d+\.\d+\.\d+ \(event schema 1\)\nlibbpf /);
    assert.match(version.stdout, / {2}tp_btf: yes/);

    const l = listen("127.0.0.1");
    const lm = new Lightmon(
      [PATH, `LIGHTMON_CACHE=${cache}`, bin, "--output", "json", "--duration", "4s", "--include", `dport=${l.port}`],
      {},
      "env",
    );
    await lm.ready();
    const [t] = await connect("127.0.0.1", l.port);
    const st = await lm.exit(15_000);
    l.close();
    assert.equal(st.code, 0, lm.stderr);
    const events = lm.events();
    assert.equal(events.length, 1);
    assert.equal(events[0].sport, t.sport);
    assert.equal(events[0].pid, t.pid);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("two first runs at once both work and leave one extracted copy", async () => {
  const { dir, bin, cache } = await freshCopy();
  try {
    const runs = await Promise.all([1, 2, 3].map(() => runDist(bin, ["--help"], [`LIGHTMON_CACHE=${cache}`])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const entries = [...Deno.readDirSync(cache)].map((e) => e.name);
    assert.equal(entries.length, 1, entries.join(", "));
    assert.match(entries[0], /^[0-9a-f]{16}$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("a new version's first run keeps it and the version before, and removes older ones", async () => {
  const { dir, bin, cache } = await freshCopy();
  try {
    const hour = 3600;
    const now = Date.now() / 1000;
    await Deno.mkdir(cache, { mode: 0o700 });
    // Three earlier versions, oldest first, a dead extraction, one fresh (another first run's), and a stranger.
    const made: [string, number][] = [
      ["00000000000000a1", now - 3 * hour],
      ["00000000000000a2", now - 2 * hour],
      ["00000000000000a3", now - hour],
      [".extract.dead01", now - 2 * hour],
      [".extract.live01", now - 60],
      ["notes", now - 5 * hour],
    ];
    for (const [name, t] of made) {
      await Deno.mkdir(`${cache}/${name}`);
      await Deno.writeTextFile(`${cache}/${name}/f`, "x");
      await Deno.utime(`${cache}/${name}`, t, t);
    }
    const r = await runDist(bin, ["--help"], [`LIGHTMON_CACHE=${cache}`]);
    assert.equal(r.code, 0, r.stderr);
    const left = [...Deno.readDirSync(cache)].map((e) => e.name).sort();
    const current = left.filter((n) => /^[0-9a-f]{16}$/.test(n) && !n.startsWith("00000000000000a"));
    assert.equal(current.length, 1, left.join(", "));
    assert.deepEqual(left, [".extract.live01", "00000000000000a3", current[0], "notes"].sort());
    // A later run of the same version extracts nothing and removes nothing.
    await Deno.mkdir(`${cache}/00000000000000a0`);
    assert.equal((await runDist(bin, ["--help"], [`LIGHTMON_CACHE=${cache}`])).code, 0);
    assert.ok(Deno.statSync(`${cache}/00000000000000a0`).isDirectory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest(
  "a sticky cache directory others can write (/tmp, a memory emptyDir) gets a private 0700 subdirectory; a non-sticky one is refused",
  async () => {
    const { dir, bin, cache } = await freshCopy();
    try {
      await Deno.mkdir(cache);
      await Deno.chmod(cache, 0o777);
      const refused = await runDist(bin, ["--help"], [`LIGHTMON_CACHE=${cache}`]);
      assert.equal(refused.code, 2);
      assert.match(
        refused.stderr,
        /^lightmon: cache directory \S+ could be replaced by another user \(\S+\/cache: owner 0, mode 777\)/,
      );
      await Deno.remove(cache, { recursive: true });
      for (const mode of [0o1777]) {
        await Deno.mkdir(cache);
        await Deno.chmod(cache, mode);
        const r = await runDist(bin, ["--help"], [`LIGHTMON_CACHE=${cache}`]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual([...Deno.readDirSync(cache)].map((e) => e.name), ["lightmon-0"]);
        const st = Deno.lstatSync(`${cache}/lightmon-0`);
        assert.ok(st.isDirectory && st.uid === 0 && (st.mode! & 0o777) === 0o700, `mode ${st.mode!.toString(8)}`);
        await Deno.remove(cache, { recursive: true });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest("a private cache subdirectory planted by someone else (a symlink, or not ours) is refused", async () => {
  const { dir, bin, cache } = await freshCopy();
  try {
    await Deno.mkdir(cache);
    await Deno.chmod(cache, 0o1777);
    const theirs = `${dir}/theirs`;
    await Deno.mkdir(theirs);
    for (const plant of ["symlink", "foreign"]) {
      if (plant === "symlink") await Deno.symlink(theirs, `${cache}/lightmon-0`);
      else {
        await Deno.mkdir(`${cache}/lightmon-0`, { mode: 0o700 });
        await Deno.chown(`${cache}/lightmon-0`, 65534, 65534);
      }
      const r = await runDist(bin, ["--help"], [`LIGHTMON_CACHE=${cache}`]);
      assert.equal(r.code, 2, plant);
      assert.match(r.stderr, /^lightmon: (cannot make a private cache directory|cache directory) \S+lightmon-0/, plant);
      assert.equal(r.stderr.split("\n").length, 2, r.stderr);
      assert.deepEqual([...Deno.readDirSync(theirs)], [], `${plant}: nothing extracted through it`);
      await Deno.remove(`${cache}/lightmon-0`, { recursive: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest(
  "the stub runs only the system's tools, and refuses a cache another user could replace on the way",
  async () => {
    const { dir, bin, cache } = await freshCopy();
    try {
      // A PATH that names a planted `tar` and `stat`: never run.
      const evil = `${dir}/evil`;
      await Deno.mkdir(evil);
      for (const tool of ["tar", "stat", "id", "tail", "mktemp"]) {
        await Deno.writeTextFile(`${evil}/${tool}`, `#!/bin/sh\ntouch ${dir}/pwned\nexit 1\n`, { mode: 0o755 });
      }
      const out = await new Deno.Command("env", {
        args: ["-i", `PATH=${evil}:/usr/bin:/bin`, `LIGHTMON_CACHE=${cache}`, bin, "--version"],
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.equal(await Deno.lstat(`${dir}/pwned`).catch(() => null), null, "a planted tool ran");
      // A cache under a directory others may write, not sticky: they could rename it away and put theirs.
      const open = `${dir}/open`;
      await Deno.mkdir(`${open}/cache`, { recursive: true });
      await Deno.chmod(open, 0o777);
      await Deno.chmod(`${open}/cache`, 0o700);
      const r = await runDist(bin, ["--version"], [`LIGHTMON_CACHE=${open}/cache`]);
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr,
        `lightmon: cache directory ${open}/cache could be replaced by another user (${open}: owner 0, mode 777); ` +
          "set LIGHTMON_CACHE to a private directory\n",
      );
      assert.deepEqual([...Deno.readDirSync(`${open}/cache`)], [], "nothing extracted there");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest("a running --learn whose extracted version a later one removed still saves what it learned", async () => {
  const { dir, bin, cache } = await freshCopy();
  const l = listen("127.0.0.1");
  try {
    const file = `${dir}/learned.yaml`;
    const lm = new Lightmon(
      [
        PATH,
        `LIGHTMON_CACHE=${cache}`,
        bin,
        "--output",
        "json",
        "--learn",
        file,
        "--duration",
        "4s",
        "--include",
        `dport=${l.port}`,
      ],
      {},
      "env",
    );
    await lm.ready();
    // What the stub does to a version two upgrades back. Deno read every chunk a literal import
    // names at start; a file read later (a computed import) would be gone now.
    await Deno.remove(cache, { recursive: true });
    await connect("127.0.0.1", l.port);
    const st = await lm.exit(15_000);
    assert.equal(st.code, 0, lm.stderr);
    assert.match(lm.stderr, /lightmon: learned 1 new flow into .*learned\.yaml \(1 in all\)/);
    assert.match(await Deno.readTextFile(file), new RegExp(` -> 127\\.0\\.0\\.1:${l.port}\n`));
  } finally {
    l.close();
    await Deno.remove(dir, { recursive: true });
  }
});
