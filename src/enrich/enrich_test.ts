import assert from "node:assert/strict";
import type { RawExec } from "../capture/decode.ts";
import { sampleEvent } from "../testdata/event.ts";
import { identifyCgroup, parseCgroup } from "./cgroup.ts";
import { Holdback } from "./holdback.ts";
import { harness } from "../testdata/stage.ts";
import {
  absolutePath,
  MAX_ARGS_BYTES,
  ProcessCache,
  procfs,
  type ProcReader,
  readBounded,
  splitArgs,
} from "./process_cache.ts";
import { parsePasswd, UserNames } from "./users.ts";
import { metaFrom } from "./docker.ts";
import { fromContainerdBundle, fromDockerData } from "./state_files.ts";

const ID = "0123456789abcdef".repeat(4);

Deno.test("container ids come from every runtime's cgroup layout", () => {
  assert.deepEqual(parseCgroup(`docker-${ID}.scope`, "system.slice"), {
    containerId: ID,
    runtime: "docker",
    podUid: "",
  });
  assert.deepEqual(parseCgroup(ID, "docker"), { containerId: ID, runtime: "docker", podUid: "" });
  assert.deepEqual(
    parseCgroup(`cri-containerd-${ID}.scope`, "kubepods-besteffort-pod1b2c3d4e_1111_2222_3333_444455556666.slice"),
    { containerId: ID, runtime: "containerd", podUid: "1b2c3d4e-1111-2222-3333-444455556666" },
  );
  assert.deepEqual(
    parseCgroup(`crio-${ID}.scope`, "kubepods-pod1b2c3d4e_1111_2222_3333_444455556666.slice").runtime,
    "crio",
  );
  assert.deepEqual(parseCgroup(ID, "pod1b2c3d4e-1111-2222-3333-444455556666"), {
    containerId: ID,
    runtime: "",
    podUid: "1b2c3d4e-1111-2222-3333-444455556666",
  });
  assert.equal(parseCgroup(`libpod-${ID}.scope`, "machine.slice").runtime, "podman");
  assert.deepEqual(parseCgroup("session-3.scope", "user-1000.slice"), { containerId: "", runtime: "", podUid: "" });
  assert.deepEqual(parseCgroup("", ""), { containerId: "", runtime: "", podUid: "" });
  assert.equal(parseCgroup(`docker-${ID.slice(1)}.scope`, "").containerId, "", "63 hex digits is no id");
  // The remembered form answers the same, and the same object the second time.
  const first = identifyCgroup(`docker-${ID}.scope`, "system.slice");
  assert.deepEqual(first, parseCgroup(`docker-${ID}.scope`, "system.slice"));
  assert.equal(identifyCgroup(`docker-${ID}.scope`, "system.slice"), first);
});

function fakeProc(procs: Record<number, { start: bigint; exe: string; args: string[]; cwd?: string }>): ProcReader {
  return {
    startNs: (pid) => procs[pid]?.start,
    exe: (pid) => procs[pid]?.exe,
    cwd: (pid) => procs[pid]?.cwd,
    args: (pid) => procs[pid]?.args,
  };
}

function exec(pid: number, start: bigint, filename: string, args: string[]): RawExec {
  return {
    kind: "exec",
    tsNs: 1n,
    procStartNs: start,
    pid,
    ppid: 1,
    uid: 0,
    gid: 0,
    mntns: 1,
    comm: "x",
    filename,
    args,
    argsTruncated: false,
  };
}

Deno.test("a process seen at exec keeps its exe and args after it exits", () => {
  let now = 0;
  const c = new ProcessCache({ proc: fakeProc({}), graceMs: 1000, now: () => now });
  c.exec(exec(10, 500n, "/bin/nc", ["nc", "host", "80"]));
  c.exit(10, 500n);
  now = 999;
  c.sweep();
  const { exe, args, source } = c.lookup(10, 500n);
  assert.deepEqual({ exe, args, source }, { exe: "/bin/nc", args: ["nc", "host", "80"], source: "exec" });
  now = 1000;
  c.sweep();
  assert.equal(c.size, 0);
});

Deno.test("a reused pid is never attributed to the old process", () => {
  const c = new ProcessCache({ proc: fakeProc({ 10: { start: 9_000_000_000n, exe: "/usr/bin/new", args: ["new"] } }) });
  c.exec(exec(10, 1_000_000_000n, "/usr/bin/old", ["old"]));
  // The connect came from a process with pid 10 that started later: /proc shows it.
  const reused = c.lookup(10, 9_000_000_000n);
  assert.deepEqual([reused.exe, reused.args, reused.source], ["/usr/bin/new", ["new"], "proc"]);
  // ... and one /proc does not know (exited, pid reused again) is unknown, not a guess.
  assert.deepEqual(c.lookup(10, 5_000_000_000n), { exe: "", args: [], source: "unknown" });
});

Deno.test("/proc fills in processes that started before lightmon, checked by start time", () => {
  const c = new ProcessCache({
    proc: fakeProc({ 7: { start: 1_000_000_000n, exe: "/usr/sbin/sshd", args: ["sshd"] } }),
  });
  // /proc start times have clock-tick resolution.
  const info = c.lookup(7, 1_004_000_000n);
  assert.equal(info.exe, "/usr/sbin/sshd");
  assert.equal(info.source, "proc");
  assert.equal(c.misses, 1);
});

Deno.test("a forked child is named after its parent until it execs, and only its own parent", () => {
  const c = new ProcessCache({ proc: fakeProc({}) });
  c.exec(exec(10, 100n, "/usr/bin/python3", ["python3", "server.py"]));
  c.fork(11, 200n, 10, 100n);
  const child = c.lookup(11, 200n);
  assert.deepEqual([child.exe, child.args, child.source], ["/usr/bin/python3", ["python3", "server.py"], "exec"]);
  c.fork(12, 300n, 10, 999n); // a parent with another start time: another process
  assert.equal(c.lookup(12, 300n).source, "unknown");
  c.exec(exec(11, 200n, "/bin/sh", ["sh"]));
  assert.equal(c.lookup(11, 200n).exe, "/bin/sh");
});

Deno.test("relative exec paths are made absolute against the working directory", () => {
  const c = new ProcessCache({ proc: fakeProc({ 5: { start: 1n, exe: "", args: [], cwd: "/home/a/src" } }) });
  c.exec(exec(5, 1n, "../bin/tool", ["../bin/tool"]));
  assert.equal(c.lookup(5, 1n).exe, "/home/a/bin/tool");
  assert.equal(absolutePath("./x", "/"), "/x");
  assert.equal(absolutePath("x", undefined), "");
});

Deno.test("the cache stays within its bound", () => {
  const c = new ProcessCache({ proc: fakeProc({}), maxEntries: 100 });
  for (let pid = 1; pid <= 1000; pid++) c.exec(exec(pid, 1n, "/bin/true", []));
  assert.equal(c.size, 100);
  assert.equal(c.lookup(1000, 1n).source, "exec");
  assert.equal(c.lookup(1, 1n).source, "unknown");
});

Deno.test("passwd parsing maps uids to the first name", () => {
  const m = parsePasswd(
    "root:x:0:0:root:/root:/bin/bash\n# c\nbad\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\ntoor:x:0:0::/:/bin/sh\n",
  );
  assert.deepEqual([...m], [[0, "root"], [33, "www-data"]]);
});

Deno.test("user names follow /etc/passwd changes", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/passwd`;
  await Deno.writeTextFile(path, "alice:x:1000:1000::/home/alice:/bin/sh\n");
  let now = 0;
  const u = new UserNames(path, 1000, () => now);
  assert.equal(u.name(1000), "alice");
  assert.equal(u.name(1001), "");
  await Deno.writeTextFile(path, "alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n");
  await Deno.utime(path, new Date(), new Date(Date.now() + 5000));
  u.refresh();
  assert.equal(u.name(1001), "", "not re-read before the interval");
  now = 2000;
  assert.equal(u.name(1001), "", "a lookup does not read the file, housekeeping does");
  u.refresh();
  assert.equal(u.name(1001), "bob");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the /proc fallback reads argv bounded as the kernel does: 512 bytes, however long it is", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/cmdline`;
  await Deno.writeTextFile(path, "prog\0" + "A".repeat(2 * 1024 * 1024) + "\0");
  const raw = readBounded(path, MAX_ARGS_BYTES)!;
  assert.equal(raw.length, 512);
  const args = splitArgs(raw);
  assert.deepEqual(args.map((a) => a.length), [4, 507]);
  assert.equal(readBounded(`${dir}/missing`, 512), undefined);
  // The real /proc: our own argv, bounded.
  assert.ok(procfs.args(Deno.pid)!.join("\0").length <= 512);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("held events leave in order, when named or when their wait is over", () => {
  let now = 0;
  const named = new Set<string>();
  const meta = { name: "web", image: "nginx", pod: "", namespace: "" };
  const h = new Holdback(200, { get: (id) => (named.has(id) ? meta : undefined), expect: () => true }, () => now);
  const run = harness(h);
  const pids = () => run.out.map((e) => e.pid);
  h.push(sampleEvent({ pid: 1, containerId: "", container: "" }));
  h.push(sampleEvent({ pid: 2, containerId: "b", container: "" })); // waits for its name
  h.push(sampleEvent({ pid: 3, containerId: "", container: "" })); // waits behind it
  assert.deepEqual(pids(), [1]);
  named.add("b");
  h.metadataArrived();
  assert.deepEqual(pids(), [1, 2, 3]);
  assert.equal(run.out[1].container, "web", "filled in when it arrived");
  assert.equal(run.flushes, 1);
  h.push(sampleEvent({ pid: 4, containerId: "d", container: "" }));
  now = 150;
  h.pump();
  assert.deepEqual(pids(), [1, 2, 3]);
  now = 201;
  h.pump();
  assert.deepEqual(pids(), [1, 2, 3, 4]);
  h.push(sampleEvent({ pid: 5, containerId: "e", container: "" }));
  h.drain();
  assert.deepEqual(pids(), [1, 2, 3, 4, 5]);
  assert.deepEqual(h.counters(), { waiting: 0, held: 4, timedOut: 1, unnamed: 2 });
});

Deno.test("events of containers no runtime will name are never held", () => {
  const h = new Holdback(10_000, { get: () => undefined, expect: () => false });
  const run = harness(h);
  h.push(sampleEvent({ pid: 1, containerId: "c", container: "", containerRuntime: "containerd" }));
  assert.equal(run.out.length, 1);
  assert.equal(h.size, 0);
});

Deno.test("a cgroup that looks like a container counts only under its runtime's own parents", () => {
  // A user with a delegated subtree can name cgroups anything: these are theirs, not containers.
  for (const parent of ["user@1000.service", "app.slice", "", "evil"]) {
    assert.deepEqual(parseCgroup(`docker-${ID}.scope`, parent), { containerId: "", runtime: "", podUid: "" }, parent);
    assert.deepEqual(parseCgroup(`cri-containerd-${ID}.scope`, parent).containerId, "", parent);
    assert.deepEqual(parseCgroup(ID, parent).containerId, "", parent);
  }
  assert.equal(parseCgroup(`libpod-${ID}.scope`, "system.slice").containerId, "");
  assert.equal(parseCgroup(ID, "default").runtime, "containerd");
  assert.equal(parseCgroup(ID, "moby").runtime, "docker");
});

Deno.test("a container-name label renames only containers Kubernetes made", () => {
  const labels = { "io.kubernetes.container.name": "kube-apiserver" };
  assert.equal(metaFrom("/mine", "busybox", labels).name, "mine");
  assert.equal(metaFrom("/k8s_apiserver_x_kube-system_1_0", "k8s", labels).name, "kube-apiserver");
  // Labels are data: a label named like an Object.prototype member is just absent.
  assert.equal(metaFrom("/k8s_a_b", "i", JSON.parse('{"__proto__": {"io.kubernetes.pod.name": "p"}}')).pod, "");
});

Deno.test("runtime metadata: Kubernetes labels and state files", async () => {
  assert.deepEqual(metaFrom("/web", "nginx", {}), { name: "web", image: "nginx", pod: "", namespace: "" });
  assert.deepEqual(
    metaFrom("/k8s_app_web-0_prod_x_0", "nginx", {
      "io.kubernetes.container.name": "app",
      "io.kubernetes.pod.name": "web-0",
      "io.kubernetes.pod.namespace": "prod",
    }),
    { name: "app", image: "nginx", pod: "web-0", namespace: "prod" },
  );
  const root = await Deno.makeTempDir();
  await Deno.mkdir(`${root}/k8s.io/${ID}`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/k8s.io/${ID}/config.json`,
    JSON.stringify({
      annotations: {
        "io.kubernetes.cri.container-name": "api",
        "io.kubernetes.cri.image-name": "registry/api:1",
        "io.kubernetes.cri.sandbox-name": "api-5d8",
        "io.kubernetes.cri.sandbox-namespace": "shop",
      },
    }),
  );
  assert.deepEqual(fromContainerdBundle(root, ID), {
    name: "api",
    image: "registry/api:1",
    pod: "api-5d8",
    namespace: "shop",
  });
  assert.equal(fromContainerdBundle(root, "f".repeat(64)), undefined);
  await Deno.mkdir(`${root}/containers/${ID}`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/containers/${ID}/config.v2.json`,
    JSON.stringify({ Name: "/db", Config: { Image: "postgres:16", Labels: null } }),
  );
  assert.deepEqual(fromDockerData(root, ID), { name: "db", image: "postgres:16", pod: "", namespace: "" });
  await Deno.remove(root, { recursive: true });
});

Deno.test("a connect is named after the image that ran at connect(), not one exec'd since", () => {
  const c = new ProcessCache({ proc: fakeProc({ 20: { start: 100n, exe: "/usr/bin/new", args: ["new"] } }) });
  const at = (ts: bigint, filename: string) => ({ ...exec(10, 100n, filename, [filename]), tsNs: ts });
  c.exec(at(1_000n, "/bin/sh"));
  c.exec(at(2_000n, "/usr/bin/curl"));
  c.exec(at(3_000n, "/bin/sleep"));
  assert.equal(c.lookup(10, 100n, 1_500n).exe, "/bin/sh");
  assert.equal(c.lookup(10, 100n, 2_500n).exe, "/usr/bin/curl");
  assert.equal(c.lookup(10, 100n, 3_000n).exe, "/bin/sleep");
  assert.equal(c.lookup(10, 100n).exe, "/bin/sleep", "no time given: the current image");
  // Before the first exec seen, and never read from /proc: unknown rather than a later image.
  assert.deepEqual(c.lookup(10, 100n, 500n), { exe: "", args: [], source: "unknown" });
  // A process first read from /proc, then exec'd: the /proc image answers for earlier connects.
  assert.equal(c.lookup(20, 100n, 50n).exe, "/usr/bin/new");
  c.exec({ ...exec(20, 100n, "/bin/true", ["true"]), tsNs: 5_000n });
  assert.equal(c.lookup(20, 100n, 4_000n).exe, "/usr/bin/new");
  assert.equal(c.lookup(20, 100n, 6_000n).exe, "/bin/true");
});
