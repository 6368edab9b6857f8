/**
 * libbpf through Deno.dlopen: one symbol table, opened lazily on first use so that
 * `--help` and unit tests never need libbpf.so.1.
 * @module
 */
import { BpfError } from "./errno.ts";
import { cstr, errno, libc } from "./libc.ts";

const SYMBOLS = {
  // struct bpf_object *bpf_object__open_mem(const void *buf, size_t sz,
  //                                         const struct bpf_object_open_opts *opts);
  bpf_object__open_mem: {
    parameters: ["buffer", "usize", "buffer"],
    result: "pointer",
  },
  // int bpf_object__load(struct bpf_object *obj);
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  // The same, on a thread of Deno's blocking pool: the main thread runs on meanwhile.
  bpf_object__load_nonblocking: { name: "bpf_object__load", parameters: ["pointer"], result: "i32", nonblocking: true },
  // void bpf_object__close(struct bpf_object *obj);
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  // struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj,
  //                                                       const char *name);
  bpf_object__find_program_by_name: {
    parameters: ["pointer", "buffer"],
    result: "pointer",
  },
  // struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj,
  //                                               const char *name);
  bpf_object__find_map_by_name: {
    parameters: ["pointer", "buffer"],
    result: "pointer",
  },
  // int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
  bpf_program__set_autoload: {
    parameters: ["pointer", "bool"],
    result: "i32",
  },
  // struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
  bpf_program__attach: { parameters: ["pointer"], result: "pointer" },
  // struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd);
  bpf_program__attach_cgroup: { parameters: ["pointer", "i32"], result: "pointer" },
  // struct bpf_link *bpf_program__attach_iter(const struct bpf_program *prog,
  //                                           const struct bpf_iter_attach_opts *opts);
  bpf_program__attach_iter: { parameters: ["pointer", "pointer"], result: "pointer" },
  // int bpf_program__fd(const struct bpf_program *prog);
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  // int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
  bpf_obj_get_info_by_fd: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int bpf_link__fd(const struct bpf_link *link);
  bpf_link__fd: { parameters: ["pointer"], result: "i32" },
  // int bpf_iter_create(int link_fd);
  bpf_iter_create: { parameters: ["i32"], result: "i32" },
  // int bpf_link__destroy(struct bpf_link *link);
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
  // int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
  bpf_map__set_initial_value: {
    parameters: ["pointer", "buffer", "usize"],
    result: "i32",
  },
  // int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
  bpf_map__set_max_entries: { parameters: ["pointer", "u32"], result: "i32" },
  // int bpf_map__fd(const struct bpf_map *map);
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  // __u32 bpf_map__max_entries(const struct bpf_map *map);
  bpf_map__max_entries: { parameters: ["pointer"], result: "u32" },
  // int bpf_map_lookup_elem(int fd, const void *key, void *value);
  bpf_map_lookup_elem: {
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
  // int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
  bpf_map_update_elem: {
    parameters: ["i32", "buffer", "buffer", "u64"],
    result: "i32",
  },
  // The same, on a thread of Deno's blocking pool: for an update the kernel makes wait.
  bpf_map_update_elem_nonblocking: {
    name: "bpf_map_update_elem",
    parameters: ["i32", "buffer", "buffer", "u64"],
    result: "i32",
    nonblocking: true,
  },
  // int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys,
  //                                     void *values, __u32 *count, const struct bpf_map_batch_opts *opts);
  bpf_map_lookup_and_delete_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer", "buffer", "pointer"],
    result: "i32",
  },
  // int bpf_prog_load(enum bpf_prog_type prog_type, const char *prog_name, const char *license,
  //                   const struct bpf_insn *insns, size_t insn_cnt, const struct bpf_prog_load_opts *opts);
  bpf_prog_load: {
    parameters: ["i32", "buffer", "buffer", "buffer", "usize", "buffer"],
    result: "i32",
  },
  // int libbpf_num_possible_cpus(void);
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
  // libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);
  libbpf_set_print: { parameters: ["function"], result: "function" },
  // __u32 libbpf_major_version(void);
  libbpf_major_version: { parameters: [], result: "u32" },
  // __u32 libbpf_minor_version(void);
  libbpf_minor_version: { parameters: [], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
// typedef int (*libbpf_print_fn_t)(enum libbpf_print_level level, const char *, va_list ap);
const PRINT_FN = { parameters: ["i32", "pointer", "pointer"], result: "i32" } as const;
let printer: Deno.UnsafeCallback<typeof PRINT_FN> | undefined;

/** Raised when libbpf.so.1 cannot be opened at all. */
export class LibbpfMissingError extends Error {
  constructor(detail: string) {
    super(
      `Cannot load libbpf.so.1 (${detail}); install it: Debian/Ubuntu 'apt-get install libbpf1', Fedora/RHEL 'dnf install libbpf'`,
    );
    this.name = "LibbpfMissingError";
  }
}

function bpf(): Symbols {
  if (!lib) {
    try {
      // LIGHTMON_LIBBPF lets packagers (and tests) point at another copy.
      lib = Deno.dlopen(Deno.env.get("LIGHTMON_LIBBPF") ?? "libbpf.so.1", SYMBOLS);
    } catch (e) {
      const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
      throw new LibbpfMissingError(msg.replace(/^(Could not open library: )+/, ""));
    }
    setLogSink(undefined);
  }
  return lib.symbols;
}

/** libbpf's version, e.g. "1.1". */
export function libbpfVersion(): string {
  const s = bpf();
  return `${s.libbpf_major_version()}.${s.libbpf_minor_version()}`;
}

/**
 * Route libbpf's log lines to `sink`, or drop them when `sink` is undefined.
 * libbpf passes a printf format and a va_list; libc's vsnprintf formats them.
 */
export function setLogSink(sink: ((line: string) => void) | undefined): void {
  const s = lib ? lib.symbols : bpf();
  printer?.close();
  printer = undefined;
  if (!sink) {
    // No callback at all: libbpf prints nothing, and may run on another thread (loadInBackground).
    s.libbpf_set_print(null);
    return;
  }
  // A verifier log comes as one message: room for a long one.
  const buf = new Uint8Array(1 << 20);
  const cb = new Deno.UnsafeCallback(
    PRINT_FN,
    (_level, fmt, ap) => {
      if (!fmt) return 0;
      const n = libc().vsnprintf(buf, BigInt(buf.length), fmt, ap);
      const len = Math.max(0, Math.min(n, buf.length - 1));
      sink(new TextDecoder().decode(buf.subarray(0, len)).trimEnd());
      return 0;
    },
  );
  printer = cb;
  s.libbpf_set_print(cb.pointer);
}

/** struct bpf_prog_info as this build knows it (linux/bpf.h of 6.x, offsetof): its size, and the fields read. */
const PROG_INFO_SIZE = 232;
const PROG_INFO = { run_time_ns: 192, run_cnt: 200, recursion_misses: 208 } as const;

/** An attached BPF program. `close()` detaches it. */
export class BpfLink implements Disposable {
  #ptr: Deno.PointerValue;
  /** The program's name. */
  readonly name: string;

  constructor(ptr: Deno.PointerObject, name: string) {
    this.#ptr = ptr;
    this.name = name;
  }

  /** Detach. Idempotent. */
  close(): void {
    if (this.#ptr) {
      bpf().bpf_link__destroy(this.#ptr);
      this.#ptr = null;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const BPF_PROG_TYPE_TRACING = 26;
const BPF_TRACE_FENTRY = 24;

/**
 * Whether the kernel refuses fentry programs outright, known in well under a
 * millisecond: a two-instruction fentry program is loaded against BTF type id 1.
 * A kernel that allows fentry rejects that id (EINVAL, it is not a function);
 * one that refuses fentry says EPERM before it looks at the id. Loading the whole
 * object to learn the same costs ~100 ms, most of it parsing the kernel's BTF.
 * Any answer but EPERM means "try the real load".
 */
export function fentryRefused(): boolean {
  // struct bpf_prog_load_opts (libbpf 1.x): sz at 0, expected_attach_type at 12,
  // attach_btf_id at 32; 104 bytes up to log_buf.
  const opts = new Uint8Array(104);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 104n, true);
  view.setUint32(12, BPF_TRACE_FENTRY, true);
  view.setUint32(32, 1, true);
  // r0 = 0; exit
  const insns = new Uint8Array([0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
  const fd = bpf().bpf_prog_load(BPF_PROG_TYPE_TRACING, cstr("lm_probe"), cstr("GPL"), insns, 2n, opts);
  if (fd >= 0) {
    libc().close(fd); // not expected: id 1 is never a function
    return false;
  }
  return -fd === 1; // EPERM
}

const BPF_PROG_TYPE_CGROUP_SKB = 8;
const BPF_FUNC_GET_NETNS_COOKIE = 122;
const BPF_FUNC_GET_CURRENT_PID_TGID = 14;
const BPF_FUNC_GET_CURRENT_TASK = 35;
const BPF_CGROUP_INET_EGRESS = 1;

/**
 * Whether cgroup_skb programs may call bpf_get_netns_cookie() here (newer kernels
 * only): a four-instruction program is loaded and closed.
 */
export function cgroupSkbHasNetnsCookie(): boolean {
  return cgroupSkbHelper(BPF_FUNC_GET_NETNS_COOKIE, 0); // BPF_CGROUP_INET_INGRESS
}

/** Whether egress cgroup_skb programs may ask who the current task is (pid, task): newer kernels only. */
export function cgroupSkbKnowsTask(): boolean {
  return cgroupSkbHelper(BPF_FUNC_GET_CURRENT_PID_TGID, BPF_CGROUP_INET_EGRESS) &&
    cgroupSkbHelper(BPF_FUNC_GET_CURRENT_TASK, BPF_CGROUP_INET_EGRESS);
}

/** Load `call helper; r0 = 1; exit` as a cgroup_skb program of `attachType`: whether the kernel takes it. */
function cgroupSkbHelper(helper: number, attachType: number): boolean {
  const opts = new Uint8Array(104);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 104n, true);
  view.setUint32(12, attachType, true); // expected_attach_type
  const insns = new Uint8Array([
    0x85,
    0,
    0,
    0,
    helper,
    0,
    0,
    0,
    0xb7,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0x95,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  const fd = bpf().bpf_prog_load(BPF_PROG_TYPE_CGROUP_SKB, cstr("lm_probe"), cstr("GPL"), insns, 3n, opts);
  if (fd < 0) return false;
  libc().close(fd);
  return true;
}

/** The options struct bpf_object__open_mem takes: only object_name is set. */
function openOpts(name: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  // struct bpf_object_open_opts { size_t sz; const char *object_name; ... }
  const opts = new Uint8Array(16);
  const view = new DataView(opts.buffer);
  view.setBigUint64(0, 16n, true);
  view.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(name))), true);
  return opts;
}

/**
 * A BPF object opened from an ELF image in memory: configure, load, attach, close.
 *
 * @example
 * ```ts
 * using obj = BpfObject.open(bytes, "lightmon");
 * obj.setAutoload("lm_fentry_conn", false);
 * obj.load();
 * const link = obj.attach("lm_btf_state");
 * ```
 */
export class BpfObject implements Disposable {
  #ptr: Deno.PointerValue;
  #links: BpfLink[] = [];
  /** Every program attached so far, detached or not: their statistics stay readable until close(). */
  #attached = new Set<string>();
  // libbpf parses the ELF image in place until load: keep it alive.
  #image: Uint8Array<ArrayBuffer>;
  #name: Uint8Array<ArrayBuffer>;

  private constructor(ptr: Deno.PointerObject, image: Uint8Array<ArrayBuffer>, name: Uint8Array<ArrayBuffer>) {
    this.#ptr = ptr;
    this.#image = image;
    this.#name = name;
  }

  /** Open (parse, not load) an object file image. */
  static open(image: Uint8Array<ArrayBuffer>, name: string): BpfObject {
    const s = bpf();
    const cname = cstr(name);
    const ptr = s.bpf_object__open_mem(image, BigInt(image.byteLength), openOpts(cname));
    if (!ptr) throw new BpfError(`open BPF object ${name}`, errno());
    return new BpfObject(ptr, image, cname);
  }

  #handle(): Deno.PointerObject {
    if (!this.#ptr) throw new Error("BPF object is closed");
    return this.#ptr;
  }

  #program(name: string): Deno.PointerObject {
    const p = bpf().bpf_object__find_program_by_name(this.#handle(), cstr(name));
    if (!p) throw new BpfError(`find program ${name}`, errno() || 2);
    return p;
  }

  #map(name: string): Deno.PointerObject {
    const m = bpf().bpf_object__find_map_by_name(this.#handle(), cstr(name));
    if (!m) throw new BpfError(`find map ${name}`, errno() || 2);
    return m;
  }

  /** Load the program `name` with the object, or leave it out. */
  setAutoload(name: string, load: boolean): void {
    const rc = bpf().bpf_program__set_autoload(this.#program(name), load);
    if (rc < 0) throw new BpfError(`set autoload for ${name}`, -rc);
  }

  /** Set the initial contents of a data map such as `.rodata` (before load). */
  setInitialValue(mapName: string, data: Uint8Array<ArrayBuffer>): void {
    const rc = bpf().bpf_map__set_initial_value(this.#map(mapName), data, BigInt(data.byteLength));
    if (rc < 0) throw new BpfError(`set initial value of ${mapName}`, -rc);
  }

  /** Resize a map before load (a ring buffer: its size in bytes, a power of two of pages). */
  setMaxEntries(mapName: string, n: number): void {
    const rc = bpf().bpf_map__set_max_entries(this.#map(mapName), n);
    if (rc < 0) throw new BpfError(`resize map ${mapName}`, -rc);
  }

  /** Verify and load every program whose autoload is on, and create the maps. */
  load(): void {
    const rc = bpf().bpf_object__load(this.#handle());
    if (rc < 0) throw new BpfError("load BPF object", -rc);
  }

  /**
   * load(), on another thread: most of its ~100 ms is libbpf reading and parsing
   * the kernel's BTF, which start-up can overlap with its own work. Nothing else
   * may use this object until the promise settles. With a log sink set, libbpf
   * would call back into JavaScript from that thread: then it loads here, blocking.
   */
  async loadInBackground(): Promise<void> {
    if (printer) return this.load();
    const rc = await bpf().bpf_object__load_nonblocking(this.#handle());
    if (rc < 0) throw new BpfError("load BPF object", -rc);
  }

  /** Attach a loaded program by its section's default attach point. */
  attach(name: string): BpfLink {
    const ptr = bpf().bpf_program__attach(this.#program(name));
    if (!ptr) throw new BpfError(`attach ${name}`, errno());
    const link = new BpfLink(ptr, name);
    this.#links.push(link);
    this.#attached.add(name);
    return link;
  }

  /** Attach a loaded cgroup program to the cgroup directory `fd` (a link: detached on close or exit). */
  attachCgroup(name: string, fd: number): BpfLink {
    const ptr = bpf().bpf_program__attach_cgroup(this.#program(name), fd);
    if (!ptr) throw new BpfError(`attach ${name}`, errno());
    const link = new BpfLink(ptr, name);
    this.#links.push(link);
    this.#attached.add(name);
    return link;
  }

  /**
   * Run an iterator program once, handing what it writes to `onBytes` a read at a
   * time (the buffer is reused: copy what is kept). The iterator's link is
   * destroyed before returning.
   */
  readIterator(name: string, onBytes: (bytes: Uint8Array) => void): void {
    const s = bpf();
    const link = s.bpf_program__attach_iter(this.#program(name), null);
    if (!link) throw new BpfError(`attach iterator ${name}`, errno());
    try {
      const fd = s.bpf_iter_create(s.bpf_link__fd(link));
      if (fd < 0) throw new BpfError(`create iterator ${name}`, -fd);
      try {
        const buf = new Uint8Array(64 * 1024);
        for (;;) {
          const n = Number(libc().read(fd, buf, BigInt(buf.length)));
          if (n < 0) throw new BpfError(`read iterator ${name}`, errno());
          if (n === 0) break;
          onBytes(buf.subarray(0, n));
        }
      } finally {
        libc().close(fd);
      }
    } finally {
      s.bpf_link__destroy(link);
    }
  }

  /** The file descriptor of a map (after load). */
  mapFd(name: string): number {
    const fd = bpf().bpf_map__fd(this.#map(name));
    if (fd < 0) throw new BpfError(`map ${name} fd`, -fd);
    return fd;
  }

  /** The max_entries of a map; for a ring buffer, its size in bytes. */
  mapMaxEntries(name: string): number {
    return bpf().bpf_map__max_entries(this.#map(name));
  }

  /** Insert or replace one element of a (non-per-CPU) map. */
  updateElem(name: string, key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>): void {
    const rc = bpf().bpf_map_update_elem(this.mapFd(name), key, value, 0n);
    if (rc < 0) throw new BpfError(`update map ${name}`, -rc);
  }

  /**
   * Resolves once every program of any kind that was running when it was called
   * has finished: it sets the map-in-map `outer`'s only element to the map `inner`,
   * and the kernel returns from such an update only after an RCU grace period,
   * which no program outlasts (a running one holds it off). Waits on a thread of
   * Deno's blocking pool, typically a few milliseconds: the main thread runs on.
   */
  async waitForPrograms(outer: string, inner: string): Promise<void> {
    const value = new Uint8Array(new Int32Array([this.mapFd(inner)]).buffer);
    const rc = await bpf().bpf_map_update_elem_nonblocking(this.mapFd(outer), new Uint8Array(4), value, 0n);
    if (rc < 0) throw new BpfError(`update map ${outer}`, -rc);
  }

  /**
   * Read and remove every element of a (non-per-CPU) hash map, in batches of at most
   * `batch` entries: `onBatch` gets each batch's keys and values, packed, and their
   * count. Exact for a map no program writes meanwhile; entries added during the
   * drain may stay for the next one. Returns the number of entries read.
   */
  drainMap(
    name: string,
    keySize: number,
    valueSize: number,
    onBatch: (keys: Uint8Array, values: Uint8Array, n: number) => void,
    batch = 4096,
  ): number {
    const s = bpf();
    const fd = this.mapFd(name);
    // The batch token: a bucket index for hash maps; a key's size is room for any map's.
    const tokenIn = new Uint8Array(Math.max(8, keySize));
    const tokenOut = new Uint8Array(Math.max(8, keySize));
    let size = batch;
    let keys = new Uint8Array(size * keySize);
    let values = new Uint8Array(size * valueSize);
    const count = new Uint32Array(1);
    let first = true;
    let total = 0;
    for (;;) {
      count[0] = size;
      const rc = s.bpf_map_lookup_and_delete_batch(fd, first ? null : tokenIn, tokenOut, keys, values, count, null);
      const err = rc < 0 ? -rc : 0;
      if (err === 28 /* ENOSPC: one bucket holds more than the batch */) {
        size *= 2;
        keys = new Uint8Array(size * keySize);
        values = new Uint8Array(size * valueSize);
        continue;
      }
      if (err !== 0 && err !== 2 /* ENOENT: the last batch */) throw new BpfError(`drain map ${name}`, err);
      if (count[0] > 0) {
        onBatch(keys, values, count[0]);
        total += count[0];
      }
      if (err === 2) return total;
      tokenIn.set(tokenOut);
      first = false;
    }
  }

  /**
   * Read one element of a (non-per-CPU) map into `value`: false when the key is not
   * there (ENOENT); any other failure throws.
   */
  lookupElem(name: string, key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>): boolean {
    const rc = bpf().bpf_map_lookup_elem(this.mapFd(name), key, value);
    if (rc >= 0) return true;
    if (-rc === 2) return false; // ENOENT (libbpf 1.x returns -errno)
    throw new BpfError(`look up map ${name}`, -rc);
  }

  /** Sum a per-CPU array of u64 counters, index by index. */
  readPerCpuCounters(name: string, count: number): bigint[] {
    const s = bpf();
    const fd = this.mapFd(name);
    const cpus = s.libbpf_num_possible_cpus();
    const values = new BigUint64Array(cpus);
    const key = new Uint32Array(1);
    const out: bigint[] = [];
    for (let i = 0; i < count; i++) {
      key[0] = i;
      const rc = s.bpf_map_lookup_elem(fd, key, values);
      if (rc < 0) throw new BpfError(`read counter ${name}[${i}]`, errno());
      out.push(values.reduce((a, b) => a + b, 0n));
    }
    return out;
  }

  /**
   * The attached programs' statistics from the kernel (bpf_prog_info), summed: runs and
   * their time (counted only while `kernel.bpf_stats_enabled` is 1), and
   * `recursionMisses`, the runs the kernel skipped because the program was already
   * running on that CPU (5.12+ for fentry, later for tracepoints and kprobes; 0 where
   * the kernel does not count): a tracepoint that fires in a softirq while its program
   * runs in the task the softirq interrupted is lost to that program. Readable after
   * detach, until close().
   */
  programStats(): { runs: bigint; runTimeNs: bigint; recursionMisses: bigint } {
    const s = bpf();
    const info = new Uint8Array(PROG_INFO_SIZE);
    const view = new DataView(info.buffer);
    const len = new Uint32Array(1);
    const total = { runs: 0n, runTimeNs: 0n, recursionMisses: 0n };
    for (const name of this.#attached) {
      info.fill(0);
      len[0] = PROG_INFO_SIZE;
      const rc = s.bpf_obj_get_info_by_fd(s.bpf_program__fd(this.#program(name)), info, len);
      if (rc < 0) throw new BpfError(`read the statistics of ${name}`, errno() || -rc);
      // A kernel older than a field returns less of the struct: the field stays 0.
      const field = (offset: number) => len[0] >= offset + 8 ? view.getBigUint64(offset, true) : 0n;
      total.runTimeNs += field(PROG_INFO.run_time_ns);
      total.runs += field(PROG_INFO.run_cnt);
      total.recursionMisses += field(PROG_INFO.recursion_misses);
    }
    return total;
  }

  /** Detach every program (newest first); maps stay readable until close(). */
  detach(): void {
    for (const link of this.#links.reverse()) link.close();
    this.#links = [];
  }

  /** Detach every program, then unload the object. Idempotent. */
  close(): void {
    this.detach();
    if (this.#ptr) {
      bpf().bpf_object__close(this.#ptr);
      this.#ptr = null;
    }
    // Only now may the image and name buffers be collected.
    void this.#image;
    void this.#name;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
