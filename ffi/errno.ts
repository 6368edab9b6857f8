/**
 * Errno names and the user-facing fix for the ones lightmon meets in practice.
 * @module
 */

const NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  28: "ENOSPC",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
  524: "ENOTSUPP",
};

/** The symbolic name of a positive errno value, e.g. `EPERM`. */
export function errnoName(errno: number): string {
  return NAMES[Math.abs(errno)] ?? `errno ${Math.abs(errno)}`;
}

/** What a user can do about an errno met while loading or attaching BPF. */
export function errnoFix(errno: number): string {
  switch (NAMES[Math.abs(errno)]) {
    case "EPERM":
    case "EACCES":
      return "run as root or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE";
    case "ENOENT":
    case "ENODEV":
      return "this kernel lacks the hook; another capture strategy may work";
    case "EINVAL":
    case "ENOTSUPP":
    case "EOPNOTSUPP":
      return "this kernel does not support the program type; another capture strategy may work";
    case "ENOMEM":
      return "raise the locked-memory limit (ulimit -l) or free memory";
    case "E2BIG":
      return "the kernel refused the program's size; use a newer kernel";
    default:
      return "run with --verbose to see libbpf's log";
  }
}

/** A failed kernel or libbpf operation, carrying the errno name and the fix. */
export class BpfError extends Error {
  /** Positive errno value. */
  readonly errno: number;
  /** The symbolic errno name. */
  readonly code: string;
  /** What the user can do about it. */
  readonly fix: string;
  /** The operation that failed. */
  readonly what: string;

  constructor(what: string, errno: number, fix = errnoFix(errno)) {
    const code = errnoName(errno);
    super(`${what}: ${code}; ${fix}`);
    this.name = "BpfError";
    this.what = what;
    this.errno = Math.abs(errno);
    this.code = code;
    this.fix = fix;
  }
}
