import assert from "node:assert/strict";
import { cgroup2Mounts } from "./cgroup_root.ts";

Deno.test("the cgroup v2 root is found where it is mounted, hybrid or unified, never a sub-cgroup", () => {
  const hybrid = [
    "25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755",
    "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate",
    "28 25 0:25 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
  ].join("\n");
  assert.deepEqual(cgroup2Mounts(hybrid), ["/sys/fs/cgroup/unified"]);
  const unified = "31 1 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
  assert.deepEqual(cgroup2Mounts(unified), ["/sys/fs/cgroup"]);
  const inContainer = "700 690 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup rw\n";
  assert.deepEqual(cgroup2Mounts(inContainer), []);
  assert.deepEqual(cgroup2Mounts("1 0 0:1 / /mnt/my\\040cg rw - cgroup2 none rw\n"), ["/mnt/my cg"]);
});
