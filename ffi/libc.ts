/**
 * The few libc calls lightmon needs beside libbpf: errno, memory maps, epoll,
 * clocks, mount(2) for tracefs and vsnprintf for libbpf's log.
 * @module
 */

const SYMBOLS = {
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
  mmap: {
    parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"],
    result: "pointer",
  },
  // int munmap(void *addr, size_t length);
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // int epoll_create1(int flags);
  epoll_create1: { parameters: ["i32"], result: "i32" },
  // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event);
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count);
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int open(const char *path, int flags, ...);
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // int clock_gettime(clockid_t clk, struct timespec *tp);
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  // int mount(const char *source, const char *target, const char *fstype,
  //           unsigned long flags, const void *data);
  mount: {
    parameters: ["buffer", "buffer", "buffer", "u64", "pointer"],
    result: "i32",
  },
  // int vsnprintf(char *str, size_t size, const char *format, va_list ap);
  vsnprintf: {
    parameters: ["buffer", "usize", "pointer", "pointer"],
    result: "i32",
  },
  // long sysconf(int name);
  sysconf: { parameters: ["i32"], result: "i64" },
  // uid_t geteuid(void);
  geteuid: { parameters: [], result: "u32" },
  // pid_t getpid(void);
  getpid: { parameters: [], result: "i32" },
  // int malloc_trim(size_t pad);
  malloc_trim: { parameters: ["usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const O_RDONLY = 0;
const O_NOFOLLOW = 0o400000;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

/** Open a directory read-only, refusing a symlink; the fd, or throws with errno. */
export function openDirectory(path: string): number {
  const fd = libc().open(cstr(path), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw new Error(`cannot open ${path}: errno ${errno()}`);
  return fd;
}

/** The opened libc symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** libc, opened on first use. */
export function libc(): Libc {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

/** The calling thread's errno; call it right after the call that failed. */
export function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** CLOCK_REALTIME */
export const CLOCK_REALTIME = 0;
/** CLOCK_MONOTONIC */
export const CLOCK_MONOTONIC = 1;
/** CLOCK_BOOTTIME */
export const CLOCK_BOOTTIME = 7;

const ts = new BigInt64Array(2);

/** clock_gettime() in nanoseconds. */
export function clockNs(clock: number): bigint {
  libc().clock_gettime(clock, ts);
  return ts[0] * 1_000_000_000n + ts[1];
}

/** The system page size. */
export function pageSize(): number {
  return Number(libc().sysconf(30 /* _SC_PAGESIZE */));
}

/** A NUL-terminated C string in a buffer. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Give freed heap memory back to the system (after libbpf's BTF parsing). */
export function releaseFreeMemory(): void {
  libc().malloc_trim(0n);
}
