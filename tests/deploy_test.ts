/**
 * The deployment files: the systemd unit passes systemd-analyze, and the DaemonSet
 * has what the tool needs on a node.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { ROOT } from "./harness.ts";

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
  const need: [string, boolean][] = [
    ["/sys/kernel/btf", true],
    ["/sys/fs/cgroup", true],
    ["/run/containerd", true],
    ["/var/run/docker.sock", true],
  ];
  for (const [path, ro] of need) {
    const m = mounts.get(path) as { name: string; readOnly?: boolean } | undefined;
    assert.ok(m, `mount ${path}`);
    assert.equal(m.readOnly ?? false, ro, `${path} read-only`);
    const v = volumes.get(m.name) as { hostPath?: { path: string } };
    assert.equal(v.hostPath?.path, path, `${path} comes from the host`);
  }
});
