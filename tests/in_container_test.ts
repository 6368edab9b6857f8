/**
 * The end-to-end suite run inside a Docker container, as CI systems run jobs: the
 * tests expect their own container and no host user name on their connects, and
 * skip (with the reason) only what needs the host itself.
 */
import assert from "node:assert/strict";
import { CI_IMAGE, dockerTest, ensureCiImage, uniqueName } from "./docker.ts";
import { ROOT, SELF } from "./harness.ts";

/** The suites whose expectations depend on where they run. */
const SUITES = ["tests/capture_test.ts", "tests/attribution_test.ts", "tests/outputs_test.ts"];

if (SELF.containerId) {
  console.error(`skipping the in-container run: already inside container ${SELF.containerId.slice(0, 12)}`);
} else {
  dockerTest("the end-to-end tests pass inside a Docker container, naming it on their own connects", async () => {
    await ensureCiImage();
    const name = uniqueName("lightmon-ci");
    // What a CI job container gets to run kernel tests: host pids and network,
    // Docker's default capabilities plus those for BPF, iptables and tracefs, the
    // Docker socket. Not --privileged: this machine's root lacks CAP_SYS_RESOURCE,
    // which --privileged would ask for.
    const caps = ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"].flatMap((c) => ["--cap-add", c]);
    const mounts = [
      "/usr:/usr:ro",
      "/etc/ld.so.cache:/etc/ld.so.cache:ro",
      "/etc/alternatives:/etc/alternatives:ro",
      "/run/docker.sock:/run/docker.sock",
      `${ROOT}:${ROOT}`,
    ].flatMap((m) => ["-v", m]);
    const out = await new Deno.Command("docker", {
      args: [
        "run",
        "--rm",
        "--name",
        name,
        "--pid=host",
        "--network=host",
        "--security-opt",
        "seccomp=unconfined",
        ...caps,
        ...mounts,
        "-w",
        ROOT,
        "-e",
        "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "-e",
        "LIGHTMON_REQUIRE_BPF=1",
        "-e",
        "LIGHTMON_REQUIRE_DOCKER=1",
        "-e",
        "NO_COLOR=1",
        CI_IMAGE,
        `${ROOT}node_modules/deno/deno`,
        "test",
        "--allow-all",
        ...SUITES,
      ],
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.ok(out.success, text.slice(-6000));
    // Only what the container forbids was skipped, each with its reason; none failed.
    assert.match(text, /skipping "dockerd stopped and restarted mid-run.*": inside container \w{12}: it stops/);
    assert.match(
      text,
      /skipping "a pid reused .*": inside container \w{12}: \/proc\/sys\/kernel\/ns_last_pid is read-only/,
    );
    assert.match(text, /skipping "another runtime's container .*": inside container \w{12}: \S+ is read-only/);
    assert.match(
      text,
      /skipping "the programs' statistics come .*": inside container \w{12}: \/proc\/sys\/kernel\/bpf_stats_enabled is read-only/,
    );
    assert.match(text, /ok \| \d+ passed \| 0 failed \| 4 ignored/);
  });
}
