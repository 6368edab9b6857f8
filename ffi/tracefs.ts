/**
 * Make sure tracefs is mounted, for classic tracepoints (libbpf reads event ids
 * from it). Mounted through mount(2), never by running mount(8).
 * @module
 */
import { BpfError } from "./errno.ts";
import { cstr, errno, libc } from "./libc.ts";

const CANDIDATES = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

function hasEvents(dir: string): boolean {
  try {
    return Deno.statSync(`${dir}/events`).isDirectory;
  } catch {
    return false;
  }
}

/** Whether a tracefs instance with events is mounted where libbpf looks. */
export function tracefsMounted(): boolean {
  return CANDIDATES.some(hasEvents);
}

/**
 * Returns the tracefs directory, mounting tracefs on /sys/kernel/tracing if no
 * mounted instance is found. Returns whether it mounted.
 */
export function ensureTracefs(): { dir: string; mounted: boolean } {
  for (const dir of CANDIDATES) if (hasEvents(dir)) return { dir, mounted: false };
  const dir = CANDIDATES[0];
  const rc = libc().mount(cstr("nodev"), cstr(dir), cstr("tracefs"), 0n, null);
  if (rc < 0) {
    throw new BpfError(
      `mount tracefs on ${dir}`,
      errno(),
      "mount it yourself (mount -t tracefs nodev /sys/kernel/tracing) or run as root",
    );
  }
  return { dir, mounted: true };
}
