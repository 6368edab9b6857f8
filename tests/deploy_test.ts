/**
 * The deployment files: the systemd unit passes systemd-analyze, and the DaemonSet
 * has what the tool needs on a node.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { dockerTest, ensureNodeImage, NODE_IMAGE, runContainer, uniqueName } from "./docker.ts";
import { assertDetached, bpfTest, connect, Lightmon, listen, ROOT, run } from "./harness.ts";

Deno.test("the systemd unit passes systemd-analyze verify", async (t) => {
  let analyze: Deno.CommandOutput;
  const dir = await Deno.makeTempDir();
  try {
    // Verify a copy whose ExecStart points at a file that exists here.
    const unit = Deno.readTextFileSync(`${ROOT}deploy/lightmon.service`)
      .replace("/usr/local/bin/lightmon", `${ROOT}lightmon`);
    Deno.writeTextFileSync(`${dir}/lightmon.service`, unit);
    try {
      analyze = await new Deno.Command("systemd-analyze", { args: ["verify", `${dir}/lightmon.service`] }).output();
    } catch {
      if (Deno.env.get("CI")) throw new Error("systemd-analyze is missing (make setup installs systemd)");
      console.error(`skipping "${t.name}": no systemd-analyze`);
      return;
    }
    const err = new TextDecoder().decode(analyze.stderr);
    // Only complaints about this unit count; the host's own units are not ours to judge.
    const ours = err.split("\n").filter((l) => l.includes("lightmon.service"));
    assert.deepEqual(ours, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the systemd unit restarts on failure, logs to files and keeps capabilities minimal", () => {
  const unit = Deno.readTextFileSync(`${ROOT}deploy/lightmon.service`);
  const keys = new Map(
    unit.split("\n").filter((l) => /^\w+=/.test(l)).map((
      l,
    ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  assert.equal(keys.get("Restart"), "on-failure");
  assert.match(keys.get("ExecStart")!, / -output logfile /);
  assert.deepEqual(keys.get("CapabilityBoundingSet")!.split(" ").sort(), [
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RESOURCE",
  ]);
  assert.equal(keys.get("NoNewPrivileges"), "yes");
});

Deno.test("the DaemonSet runs on every node with host pids and the mounts lightmon reads", () => {
  // deno-lint-ignore no-explicit-any
  const ds = parse(Deno.readTextFileSync(`${ROOT}deploy/daemonset.yaml`)) as any;
  assert.equal(ds.apiVersion, "apps/v1");
  assert.equal(ds.kind, "DaemonSet");
  const pod = ds.spec.template.spec;
  assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
  assert.equal(pod.hostPID, true);
  assert.deepEqual(pod.tolerations, [{ operator: "Exists" }]);
  const c = pod.containers[0];
  assert.ok(c.resources.limits.cpu && c.resources.limits.memory && c.resources.requests.memory);
  assert.equal(c.securityContext.privileged, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
  for (const cap of ["BPF", "PERFMON"]) assert.ok(c.securityContext.capabilities.add.includes(cap), cap);
  const volumes = new Map(pod.volumes.map((v: { name: string; hostPath?: { path: string } }) => [v.name, v]));
  const mounts = new Map(
    c.volumeMounts.map((m: { name: string; mountPath: string; readOnly?: boolean }) => [m.mountPath, m]),
  );
  const need: [string, string, boolean][] = [
    ["/sys/kernel/btf", "/sys/kernel/btf", true],
    ["/sys/fs/cgroup", "/sys/fs/cgroup", true],
    ["/run/containerd", "/run/containerd", true],
    ["/host/run", "/run", true],
    ["/var/lib/cni/networks", "/var/lib/cni/networks", true],
  ];
  for (const [path, hostPath, ro] of need) {
    const m = mounts.get(path) as { name: string; readOnly?: boolean } | undefined;
    assert.ok(m, `mount ${path}`);
    assert.equal(m.readOnly ?? false, ro, `${path} read-only`);
    const v = volumes.get(m.name) as { hostPath?: { path: string; type?: string } };
    assert.equal(v.hostPath?.path, hostPath, `${path} comes from the host`);
  }
  // Every hostPath says what it must be: a missing socket path is never made a directory.
  for (const v of pod.volumes as { name: string; hostPath?: { path: string; type?: string } }[]) {
    if (v.hostPath) assert.ok(["Directory", "DirectoryOrCreate"].includes(v.hostPath.type ?? ""), v.name);
  }
  const socket = c.args[c.args.indexOf("-docker_runtime") + 1];
  assert.equal(socket, "/host/run/docker.sock");
});

// deno-lint-ignore no-explicit-any
type Manifest = any;

/** The DaemonSet with its "drift {" ... "drift }" blocks uncommented, as the manifest says to turn drift on. */
function withDrift(text: string): string {
  let on = false;
  return text.split("\n").map((l) => {
    if (/^\s*# drift \{$/.test(l)) return (on = true, "");
    if (/^\s*# drift \}$/.test(l)) return (on = false, "");
    return on ? l.replace(/^(\s*)# /, "$1") : l;
  }).join("\n");
}

Deno.test("the DaemonSet's drift blocks mount the baseline ConfigMap read-only where -baseline reads it, and its baseline checks", async () => {
  const text = Deno.readTextFileSync(`${ROOT}deploy/daemonset.yaml`);
  const plain = parse(text) as Manifest;
  assert.equal(plain.spec.template.spec.containers[0].args.includes("-baseline"), false, "drift is off as shipped");
  const ds = parse(withDrift(text)) as Manifest;
  const pod = ds.spec.template.spec;
  const c = pod.containers[0];
  const file = c.args[c.args.indexOf("-baseline") + 1];
  assert.ok(c.args.includes("-metrics-addr"), "drift metrics");
  const mount = c.volumeMounts.find((m: Manifest) => file.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `a mount holds ${file}`);
  assert.equal(mount.readOnly, true);
  const volume = pod.volumes.find((v: Manifest) => v.name === mount.name);
  const cm = parse(Deno.readTextFileSync(`${ROOT}deploy/baseline-configmap.yaml`)) as Manifest;
  assert.deepEqual([cm.kind, cm.metadata.name, cm.metadata.namespace], [
    "ConfigMap",
    volume.configMap.name,
    ds.metadata.namespace,
  ]);
  const key = file.slice(mount.mountPath.length + 1);
  assert.ok(typeof cm.data[key] === "string", `the ConfigMap has ${key}`);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/${key}`, cm.data[key]);
    const out = await new Deno.Command(`${ROOT}lightmon`, {
      args: ["baseline", "check", `${dir}/${key}`],
      stderr: "piped",
    })
      .output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the collector snippet receives OTLP/HTTP where the DaemonSet sends it, into a logs pipeline", () => {
  const col = parse(Deno.readTextFileSync(`${ROOT}deploy/otel-collector.yaml`)) as Manifest;
  assert.match(col.receivers.otlp.protocols.http.endpoint, /:4318$/);
  assert.ok(col.service.pipelines.logs.receivers.includes("otlp"));
  for (const p of col.service.pipelines.logs.processors) assert.ok(p in col.processors, p);
  for (const e of col.service.pipelines.logs.exporters) assert.ok(e in col.exporters, e);
  const ds = parse(Deno.readTextFileSync(`${ROOT}deploy/daemonset.yaml`)) as Manifest;
  const env = ds.spec.template.spec.containers[0].env;
  const endpoint = env.find((e: Manifest) => e.name === "OTEL_EXPORTER_OTLP_ENDPOINT").value;
  assert.match(endpoint, /^http:\/\/[^/]+:4318$/);
  assert.equal(env.find((e: Manifest) => e.name === "OTEL_RESOURCE_ATTRIBUTES").value, "k8s.node.name=$(NODE_NAME)");
});

/** Capability numbers of the names the manifests use. */
const CAP_NUMBER: Record<string, number> = { SYS_PTRACE: 19, SYS_ADMIN: 21, SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 };

/** Whether this host's bounding set has `cap` (this machine's root lacks CAP_SYS_RESOURCE). */
function hostHasCap(cap: string): boolean {
  const bnd = BigInt("0x" + /CapBnd:\s*([0-9a-f]+)/.exec(Deno.readTextFileSync("/proc/self/status"))![1]);
  assert.ok(cap in CAP_NUMBER, `unknown capability ${cap}`);
  return ((bnd >> BigInt(CAP_NUMBER[cap])) & 1n) === 1n;
}

/** Kubernetes quantities as docker wants them: 256Mi -> 256m, 1 -> 1. */
const dockerMemory = (q: string) => q.replace(/Mi$/, "m").replace(/Gi$/, "g");

/**
 * `docker run` arguments for the DaemonSet's first container, as kubelet would run
 * it: host pids, the capability set, read-only root, the memory and CPU limits,
 * env, hostPath mounts (with kubelet's type checks) and a memory emptyDir as a
 * world-writable tmpfs. Kubernetes runs pods without seccomp unless asked.
 */
function dockerRunArgs(ds: Manifest, name: string, dist: string, image: string): string[] {
  const pod = ds.spec.template.spec;
  const c = pod.containers[0];
  const sc = c.securityContext ?? {};
  const args = ["run", "-d", "--name", name, "--security-opt", "seccomp=unconfined"];
  if (pod.hostPID) args.push("--pid=host");
  if (sc.privileged) args.push("--privileged");
  if (sc.readOnlyRootFilesystem) args.push("--read-only");
  // Docker 20.10 (Debian 12) does not know CAP_BPF or CAP_PERFMON: the kernel
  // grants what they allow to CAP_SYS_ADMIN too, which the manifest adds. And a
  // capability the host's own bounding set lacks (CAP_SYS_RESOURCE on this
  // machine) cannot be given to any container here.
  assert.deepEqual(sc.capabilities?.drop, ["ALL"]);
  args.push("--cap-drop", "ALL");
  const add: string[] = sc.capabilities?.add ?? [];
  for (const cap of add) {
    if (cap === "BPF" || cap === "PERFMON") {
      assert.ok(add.includes("SYS_ADMIN"), `${cap} needs SYS_ADMIN on Docker 20.10`);
    } else if (hostHasCap(cap)) args.push("--cap-add", cap);
  }
  if (c.resources?.limits?.memory) args.push("--memory", dockerMemory(c.resources.limits.memory));
  if (c.resources?.limits?.cpu) args.push("--cpus", String(c.resources.limits.cpu));
  // kubelet's env: a node's name from the downward API, $(VAR) expanded from the ones before.
  const env = new Map<string, string>();
  for (const e of c.env ?? []) {
    const value = e.valueFrom?.fieldRef?.fieldPath === "spec.nodeName"
      ? "node-under-test"
      : String(e.value).replace(/\$\((\w+)\)/g, (_: string, v: string) => env.get(v) ?? `$(${v})`);
    env.set(e.name, value);
    args.push("-e", `${e.name}=${value}`);
  }
  const volumes = new Map(pod.volumes.map((v: Manifest) => [v.name, v]));
  for (const m of c.volumeMounts) {
    const v = volumes.get(m.name) as Manifest;
    if (v.hostPath) {
      const { path, type } = v.hostPath;
      if (type === "DirectoryOrCreate") Deno.mkdirSync(path, { recursive: true });
      else if (type === "Directory") assert.ok(Deno.statSync(path).isDirectory, `kubelet: ${path} is not a directory`);
      else if (type === "Socket") assert.ok(Deno.statSync(path).isSocket, `kubelet: ${path} is not a socket`);
      else assert.fail(`hostPath ${path} has no type: the runtime would create a directory there if it were missing`);
      args.push("-v", `${path}:${m.mountPath}${m.readOnly ? ":ro" : ""}`);
    } else if (v.emptyDir) {
      assert.equal(v.emptyDir.medium, "Memory", "a disk emptyDir: translate it as a 0777 host directory");
      const size = v.emptyDir.sizeLimit ? `,size=${dockerMemory(v.emptyDir.sizeLimit)}` : "";
      args.push("--tmpfs", `${m.mountPath}:mode=1777,exec${size}`);
    } else {
      assert.fail(`volume ${m.name}: not translated`);
    }
  }
  // What the image's Dockerfile does: the dist file as the entry point.
  args.push("-v", `${dist}:/usr/local/bin/lightmon:ro`, "--entrypoint", "/usr/local/bin/lightmon", image, ...c.args);
  return args;
}

dockerTest("the DaemonSet's container, run by docker as kubelet would, starts and names containers", async () => {
  await ensureNodeImage();
  const ds = parse(Deno.readTextFileSync(`${ROOT}deploy/daemonset.yaml`)) as Manifest;
  const name = uniqueName("lightmon-ds");
  const l = listen("127.0.0.1");
  const args = dockerRunArgs(ds, name, `${ROOT}dist/lightmon`, NODE_IMAGE);
  await run("docker", args);
  const logs = async () => {
    const out = await new Deno.Command("docker", { args: ["logs", name] }).output();
    return { stdout: new TextDecoder().decode(out.stdout), stderr: new TextDecoder().decode(out.stderr) };
  };
  const until = async (pred: (o: { stdout: string; stderr: string }) => boolean, what: string) => {
    const end = Date.now() + 30_000;
    let last = await logs();
    while (!pred(last)) {
      if (Date.now() > end) {
        throw new Error(`timed out waiting for ${what}:\n${last.stderr}\n${last.stdout.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
      last = await logs();
    }
    return last;
  };
  try {
    await until((o) => /lightmon: capture /.test(o.stderr) || /exit|error/i.test(o.stderr), "the start-up line");
    const started = await logs();
    assert.match(started.stderr, /lightmon: capture \S+ .*containers: docker \(\d+ containers\)/, started.stderr);
    const client = uniqueName("lightmon-ds-client");
    const { id } = await runContainer(client, ["/bin/connector", "127.0.0.1", String(l.port)]);
    const got = await until((o) => o.stdout.includes(`"containerId":"${id}"`), "the client container's event");
    const e = got.stdout.split("\n").filter((x) => x.includes(`"containerId":"${id}"`)).map((x) => JSON.parse(x))[0];
    assert.equal(e.container, client);
    assert.equal(e.dport, l.port);
    assert.equal(e.exe, "/bin/connector");
    const stop = await new Deno.Command("docker", { args: ["stop", "-t", "10", name] }).output();
    assert.ok(stop.success);
    const inspect = await run("docker", ["inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", name]);
    assert.equal(inspect.trim(), "0 false", (await logs()).stderr);
    assert.match((await logs()).stderr, /lightmon: seen \d+ emitted \d+ filtered \d+ dropped \d+/);
  } finally {
    await new Deno.Command("docker", { args: ["rm", "-f", name] }).output();
    l.close();
  }
  await assertDetached();
});

/** The unit's `Key=value` lines (the last of each key). */
function unitKeys(): Map<string, string> {
  const unit = Deno.readTextFileSync(`${ROOT}deploy/lightmon.service`);
  return new Map(
    unit.split("\n").filter((l) => /^\w+=/.test(l)).map((
      l,
    ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

bpfTest("the systemd unit's command line runs under the unit's capabilities, no-new-privs and memlock", async () => {
  // No systemd as PID 1 here: setpriv and prlimit apply what the unit asks of systemd.
  const keys = unitKeys();
  const dir = await Deno.makeTempDir({ prefix: "lightmon-unit-" });
  const logs = `${dir}/log`, cache = `${dir}/cache`;
  Deno.mkdirSync(logs, { mode: 0o750 }); // LogsDirectory=, LogsDirectoryMode=0750
  Deno.mkdirSync(cache, { mode: 0o700 }); // CacheDirectory=, CacheDirectoryMode=0700
  const exec = keys.get("ExecStart")!.split(" ")
    .map((a) => a === "/usr/local/bin/lightmon" ? `${ROOT}dist/lightmon` : a === "/var/log/lightmon" ? logs : a);
  const caps = keys.get("CapabilityBoundingSet")!.split(" ");
  assert.deepEqual(keys.get("AmbientCapabilities")!.split(" "), caps);
  const setpriv = [`--bounding-set=-all,${caps.map((c) => "+" + c.slice(4).toLowerCase()).join(",")}`];
  if (keys.get("NoNewPrivileges") === "yes") setpriv.push("--no-new-privs");
  assert.equal(keys.get("LimitMEMLOCK"), "infinity");
  const env = Object.fromEntries([keys.get("Environment")!.split("=")]);
  env.LIGHTMON_CACHE = cache;
  // LimitMEMLOCK=infinity needs CAP_SYS_RESOURCE, which this machine's root lacks;
  // kernels since 5.11 charge BPF memory to the cgroup instead, so it runs without.
  const memlock = (await new Deno.Command("prlimit", { args: ["--memlock=unlimited", "true"] }).output()).success;
  if (!memlock) console.error("  (LimitMEMLOCK=infinity not applied: no CAP_SYS_RESOURCE here)");
  const l = listen("127.0.0.1");
  const lm = new Lightmon(
    [...(memlock ? ["--memlock=unlimited"] : []), "setpriv", ...setpriv, "--", ...exec, "-include", `dport=${l.port}`],
    env,
    memlock ? "prlimit" : "env",
  );
  try {
    await lm.ready(30_000);
    assert.match(lm.stderr, /lightmon: capture tp_btf/);
    const status = Deno.readTextFileSync(`/proc/${lm.child.pid}/status`);
    assert.match(status, /NoNewPrivs:\s*1/);
    const [t] = await connect("127.0.0.1", l.port);
    const file = () => [...Deno.readDirSync(logs)].map((e) => `${logs}/${e.name}`)[0];
    await lm.until(() => !!file() && Deno.readTextFileSync(file()).includes(`"pid":"${t.pid}"`), 5000, "the log line");
    assert.equal(Deno.statSync(file()).mode! & 0o777, 0o640);
  } finally {
    const st = await lm.stop("SIGTERM");
    assert.equal(st.code, 0, lm.stderr);
    l.close();
    await Deno.remove(dir, { recursive: true });
  }
  await assertDetached();
});

bpfTest(
  "CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE alone suffice where tp_btf works (SYS_ADMIN is for tracefs only)",
  async () => {
    const l = listen("127.0.0.1");
    const lm = new Lightmon(
      [
        "--bounding-set=-all,+bpf,+perfmon,+sys_ptrace",
        "--no-new-privs",
        "--",
        `${ROOT}dist/lightmon`,
        "--output",
        "json",
        "--include",
        `dport=${l.port}`,
      ],
      {},
      "setpriv",
    );
    try {
      await lm.ready(30_000);
      assert.match(lm.stderr, /lightmon: capture tp_btf/);
      assert.match(Deno.readTextFileSync(`/proc/${lm.child.pid}/status`), /CapBnd:\s*000000c000080000/);
      const [t] = await connect("127.0.0.1", l.port);
      await lm.until((o) => o.includes(`"pid":${t.pid},`), 5000, "the event");
    } finally {
      const st = await lm.stop("SIGTERM");
      assert.equal(st.code, 0, lm.stderr);
      l.close();
    }
    await assertDetached();
  },
);
