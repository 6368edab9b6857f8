/**
 * Checks that turn a missing privilege or kernel feature into one clear line
 * before any BPF call is made.
 * @module
 */
import { UsageError } from "../usage_error.ts";

const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

/** The effective capability set from /proc/self/status. */
export function effectiveCaps(status = Deno.readTextFileSync("/proc/self/status")): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt("0x" + m[1]) : 0n;
}

/** Throw unless we may load and attach tracing programs. */
export function requirePrivileges(caps = effectiveCaps()): void {
  const has = (c: bigint) => (caps >> c) & 1n;
  if (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) return;
  throw new UsageError(
    "lightmon needs root: run it with sudo, or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE",
  );
}

/** Throw unless the kernel exposes its BTF, which CO-RE needs. */
export function requireBtf(path = "/sys/kernel/btf/vmlinux"): void {
  try {
    Deno.statSync(path);
  } catch {
    throw new UsageError(
      `this kernel has no BTF (${path} is missing); lightmon needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, as Debian 11+, Ubuntu 20.10+ and RHEL 8.2+ ship`,
    );
  }
}

/** Read the BPF object, with the fix in the error when it is missing. */
export function readObject(path: string): Uint8Array<ArrayBuffer> {
  try {
    return Deno.readFileSync(path) as Uint8Array<ArrayBuffer>;
  } catch {
    throw new UsageError(`BPF object not found at ${path}; run 'make setup' (or set LIGHTMON_BPF_OBJECT)`);
  }
}
