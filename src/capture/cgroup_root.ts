/**
 * Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on unified hosts,
 * `/sys/fs/cgroup/unified` on hybrid ones (v1 controllers beside it), anywhere an
 * administrator chose. Read from /proc/self/mountinfo, never assumed.
 * @module
 */

/** The mount points of cgroup2 file systems showing the hierarchy's root, best first. */
export function cgroup2Mounts(mountinfo: string): string[] {
  const found: string[] = [];
  for (const line of mountinfo.split("\n")) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const [left, right] = line.split(" - ");
    if (!right || right.split(" ")[0] !== "cgroup2") continue;
    const f = left.split(" ");
    if (f.length < 5 || f[3] !== "/") continue; // a sub-cgroup (a container's cgroup namespace) sees only itself
    found.push(f[4].replace(/\\040/g, " "));
  }
  const rank = (m: string) => (m === "/sys/fs/cgroup" ? 0 : m === "/sys/fs/cgroup/unified" ? 1 : 2);
  return found.sort((a, b) => rank(a) - rank(b));
}

/** The cgroup v2 root to attach to, or undefined when none is mounted here. */
export function cgroup2Root(): string | undefined {
  try {
    return cgroup2Mounts(Deno.readTextFileSync("/proc/self/mountinfo"))[0];
  } catch {
    return undefined;
  }
}
