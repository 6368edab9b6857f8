/**
 * End-to-end: one baseline for a fleet. `lightmon baseline merge` and `check` on
 * real files, and a running lightmon whose --baseline is a Kubernetes ConfigMap
 * mount (the exact layout kubelet writes: a 0777 volume directory mounted
 * read-only, a timestamped directory, `..data` pointing to it, the file a link
 * into `..data`, updates swapped in by renaming a new `..data` over the old one):
 * the next connect after a swap is judged by the new baseline; a broken or
 * untrusted new version leaves the old rules, said and counted.
 */
import assert from "node:assert/strict";
import { bpfTest, connect, CONNECTOR, LIGHTMON, Lightmon, listen } from "./harness.ts";

type Ev = Record<string, unknown>;
const dec = new TextDecoder();

async function sh(cmd: string, ...args: string[]): Promise<void> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  assert.ok(r.success, `${cmd} ${args.join(" ")}: ${dec.decode(r.stderr)}`);
}

/** `lightmon baseline ARGS`: exit code, stdout, stderr. */
async function baseline(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(LIGHTMON, { args: ["baseline", ...args], stdout: "piped", stderr: "piped" })
    .output();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

const baselineText = (lines: string[]) =>
  `lightmon-baseline: 1\nworkloads:\n  host:\n${lines.map((l) => `    - ${JSON.stringify(l)}\n`).join("")}`;

Deno.test("baseline merge: node baselines into one, covered flows once, comments of the first kept; check finds the line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lightmon-fleet-" });
  try {
    await Deno.writeTextFile(
      `${dir}/node-a.yaml`,
      "# reviewed by the platform team\nlightmon-baseline: 1\nworkloads:\n  host:\n    - /usr/bin/curl -> *.example.com:443 # the API\n",
    );
    await Deno.writeTextFile(
      `${dir}/node-b.yaml`,
      "lightmon-baseline: 1\nworkloads:\n  host:\n    - /usr/bin/curl -> api.example.com:443\n    - /usr/bin/wget -> 10.0.0.1:80\n  pod shop/web:\n    - /app/web -> db.shop.svc.cluster.local:5432\n",
    );
    await Deno.writeTextFile(
      `${dir}/node-c.yaml`,
      "lightmon-baseline: 1\nworkloads:\n  host:\n    - /usr/bin/wget -> 10.0.0.1:80\n  pod shop/web:\n    - /app/web -> db.shop.svc.cluster.local:5432\n",
    );
    const m = await baseline(
      "merge",
      `${dir}/node-a.yaml`,
      `${dir}/node-b.yaml`,
      `${dir}/node-c.yaml`,
      "-o",
      `${dir}/fleet.yaml`,
    );
    assert.equal(m.code, 0, m.err);
    assert.equal(m.err, `lightmon: merged 3 baselines into ${dir}/fleet.yaml: 3 flows (2 added, 3 covered already)\n`);
    assert.equal(
      await Deno.readTextFile(`${dir}/fleet.yaml`),
      "# reviewed by the platform team\nlightmon-baseline: 1\nworkloads:\n  host:\n" +
        "    - /usr/bin/curl -> *.example.com:443 # the API\n    - /usr/bin/wget -> 10.0.0.1:80\n" +
        "  pod shop/web:\n    - /app/web -> db.shop.svc.cluster.local:5432\n",
    );
    // Stable: merging the result with its inputs again changes nothing.
    const again = await baseline("merge", `${dir}/fleet.yaml`, `${dir}/node-b.yaml`, `${dir}/node-c.yaml`);
    assert.equal(again.code, 0, again.err);
    assert.equal(again.out, await Deno.readTextFile(`${dir}/fleet.yaml`));
    const ok = await baseline("check", `${dir}/fleet.yaml`);
    assert.deepEqual([ok.code, ok.err], [0, `lightmon: ${dir}/fleet.yaml: ok, 3 flows\n`]);
    await Deno.writeTextFile(
      `${dir}/bad.yaml`,
      "lightmon-baseline: 1\nworkloads:\n  host:\n    - /usr/bin/curl -> x:99999\n",
    );
    const bad = await baseline("check", `${dir}/fleet.yaml`, `${dir}/bad.yaml`);
    assert.equal(bad.code, 2);
    assert.match(
      bad.err,
      new RegExp(`^lightmon: ${dir}/fleet.yaml: ok, 3 flows\nlightmon: ${dir}/bad.yaml:4: '99999' is not a port`),
    );
    // A merge with a mistake in one input writes nothing and says where.
    const no = await baseline("merge", `${dir}/fleet.yaml`, `${dir}/bad.yaml`, "-o", `${dir}/out.yaml`);
    assert.equal(no.code, 2);
    assert.match(no.err, /^lightmon: \S+bad\.yaml:4: /);
    await assert.rejects(Deno.stat(`${dir}/out.yaml`), Deno.errors.NotFound);
    const usage = await baseline("frob");
    assert.deepEqual([usage.code, usage.err], [
      2,
      "lightmon: baseline: unknown command 'frob'; see lightmon baseline --help\n",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A ConfigMap volume as kubelet writes it, seen through a read-only bind mount, as a pod sees it. */
class ConfigMapVolume {
  #n = 0;
  private constructor(readonly base: string, readonly source: string, readonly mount: string) {}

  static async create(text: string): Promise<ConfigMapVolume> {
    const base = await Deno.makeTempDir({ prefix: "lightmon-configmap-" });
    const v = new ConfigMapVolume(base, `${base}/volume`, `${base}/pod`);
    await Deno.mkdir(v.source);
    await Deno.chmod(v.source, 0o777); // as kubelet makes a ConfigMap's (emptyDir-backed) volume
    await Deno.mkdir(v.mount);
    await v.swap(text);
    await Deno.symlink("..data/baseline.yaml", `${v.source}/baseline.yaml`);
    await sh("mount", "--bind", v.source, v.mount);
    await sh("mount", "-o", "remount,bind,ro", v.mount);
    return v;
  }

  /** The file lightmon is given. */
  get path(): string {
    return `${this.mount}/baseline.yaml`;
  }

  /** kubelet's update: a new timestamped directory, a new ..data link renamed over the old, the old directory removed. */
  async swap(text: string, fileOwner = 0): Promise<void> {
    const ts = `..2026_12_03_10_00_${String(this.#n++).padStart(2, "0")}.${Deno.pid}`;
    await Deno.mkdir(`${this.source}/${ts}`, { mode: 0o755 });
    await Deno.writeTextFile(`${this.source}/${ts}/baseline.yaml`, text, { mode: 0o644 });
    await Deno.chmod(`${this.source}/${ts}/baseline.yaml`, 0o644);
    if (fileOwner !== 0) await Deno.chown(`${this.source}/${ts}/baseline.yaml`, fileOwner, fileOwner);
    let old: string | undefined;
    try {
      old = await Deno.readLink(`${this.source}/..data`);
    } catch { /* the first */ }
    await Deno.symlink(ts, `${this.source}/..data_tmp`);
    await Deno.rename(`${this.source}/..data_tmp`, `${this.source}/..data`);
    if (old) await Deno.remove(`${this.source}/${old}`, { recursive: true });
  }

  async close(): Promise<void> {
    await sh("umount", this.mount);
    await Deno.remove(this.base, { recursive: true });
  }
}

bpfTest(
  "a ConfigMap-mounted baseline swapped mid-run judges the next connect; a broken or untrusted version keeps the old rules",
  async () => {
    const a = listen("127.0.0.1");
    const b = listen("127.0.0.1");
    const rule = (port: number) => `${CONNECTOR} -> 127.0.0.1:${port}`;
    const cm = await ConfigMapVolume.create(baselineText([rule(a.port)]));
    const lm = new Lightmon([
      "--output",
      "json",
      "--baseline",
      cm.path,
      "--include",
      `dport=${a.port} || dport=${b.port}`,
    ]);
    /** Connect to `port` and wait for its record's verdict. */
    const verdict = async (port: number): Promise<unknown> => {
      const [t] = await connect("127.0.0.1", port);
      await lm.until((o) => o.includes(`"sport":${t.sport},`), 10_000, `the connect from ${t.sport}`);
      return lm.events().find((e: Ev) => e.sport === t.sport)!.novel;
    };
    try {
      await lm.ready();
      assert.match(lm.stderr, new RegExp(`baseline ${cm.path} \\(1 flows\\)`));
      assert.deepEqual([await verdict(a.port), await verdict(b.port)], [false, true]);

      await cm.swap(baselineText([rule(b.port)]));
      await lm.until(
        (_o, e) => e.includes(`lightmon: baseline ${cm.path} changed: re-read (1 flows)`),
        5000,
        "the re-read",
      );
      assert.deepEqual([await verdict(a.port), await verdict(b.port)], [true, false], "judged by the new baseline");

      // A mistake: said once, and the rules stay.
      await cm.swap("lightmon-baseline: 1\nworkloads:\n  host:\n    - nonsense\n");
      await lm.until(
        (_o, e) => /changed: not re-read, the previous one stays \(\S+:4: expected/.test(e),
        5000,
        "the refusal",
      );
      // Another's file behind the link: refused as a file others control.
      await cm.swap(baselineText([rule(a.port)]), 65534);
      await lm.until(
        (_o, e) => /changed: not re-read, the previous one stays \([^)]*belongs to uid 65534/.test(e),
        5000,
        "the owner",
      );
      assert.deepEqual([await verdict(a.port), await verdict(b.port)], [true, false], "the old rules still");

      const st = await lm.stop();
      assert.equal(st.code, 0, lm.stderr);
      assert.match(lm.stderr, /baseline reload-failures 2/);
      assert.equal(lm.stderr.match(/changed: not re-read/g)?.length, 2, "each bad version said once");
    } finally {
      await lm.stop().catch(() => {});
      a.close();
      b.close();
      await cm.close();
    }
  },
);
