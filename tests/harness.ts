/**
 * End-to-end harness: runs the real ./lightmon as a child process, makes real
 * connections with build/connector, and reads back what lightmon printed.
 * @module
 */
import assert from "node:assert/strict";

export const ROOT = new URL("..", import.meta.url).pathname;
export const LIGHTMON = `${ROOT}lightmon`;
export const CONNECTOR = `${ROOT}build/connector`;
export const OBJECT = `${ROOT}build/lightmon.bpf.o`;

/** Why kernel tests cannot run here, or undefined when they can. */
export function bpfUnavailable(): string | undefined {
  if (Deno.uid() !== 0) return "not root";
  try {
    Deno.statSync("/sys/kernel/btf/vmlinux");
  } catch {
    return "no /sys/kernel/btf/vmlinux";
  }
  for (const f of [OBJECT, CONNECTOR, `${ROOT}dist/lightmon`]) {
    try {
      Deno.statSync(f);
    } catch {
      return `${f} missing (make bpf helpers dist)`;
    }
  }
  return undefined;
}

/** Why a test cannot run inside a container (a read-only mount, the host's own dockerd), if so. */
export interface InContainer {
  inContainer?: () => string | undefined;
}

/**
 * Inside a container, a test whose setup the container forbids is registered as
 * ignored with the reason, whatever LIGHTMON_REQUIRE_* say: no container of that
 * kind can run it. Returns whether it was.
 */
export function skippedInContainer(name: string, opts: InContainer): boolean {
  const forbidden = SELF.containerId ? opts.inContainer?.() : undefined;
  if (!forbidden) return false;
  console.error(`skipping "${name}": inside container ${SELF.containerId.slice(0, 12)}: ${forbidden}`);
  Deno.test({ name, ignore: true, fn: () => {} });
  return true;
}

/**
 * Deno.test for tests that need the kernel: skipped with the reason printed when
 * BPF is unavailable, failed instead when LIGHTMON_REQUIRE_BPF=1.
 */
export function bpfTest(name: string, fn: () => Promise<void>, opts: InContainer = {}): void {
  if (skippedInContainer(name, opts)) return;
  const why = bpfUnavailable();
  const required = Deno.env.get("LIGHTMON_REQUIRE_BPF") === "1";
  if (why && !required) console.error(`skipping "${name}": ${why}`);
  Deno.test({
    name,
    ignore: why !== undefined && !required,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      if (why) throw new Error(`LIGHTMON_REQUIRE_BPF=1 but ${why}`);
      await fn();
    },
  });
}

/** A running lightmon. */
export class Lightmon {
  readonly child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #done: Promise<Deno.CommandStatus>;
  #readers: Promise<void>[];

  constructor(args: string[], env: Record<string, string> = {}, cmd = LIGHTMON) {
    this.child = new Deno.Command(cmd, {
      args,
      env: { COLUMNS: "200", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const dec = new TextDecoder();
    const pump = async (s: ReadableStream<Uint8Array>, into: "out" | "err") => {
      for await (const chunk of s) {
        const t = dec.decode(chunk, { stream: true });
        if (into === "out") this.#stdout += t;
        else this.#stderr += t;
      }
    };
    this.#readers = [pump(this.child.stdout, "out"), pump(this.child.stderr, "err")];
    this.#done = this.child.status;
  }

  get stdout(): string {
    return this.#stdout;
  }
  get stderr(): string {
    return this.#stderr;
  }

  /** Wait until `pred` holds on (stdout, stderr), or fail after `ms`. */
  async until(pred: (out: string, err: string) => boolean, ms = 10_000, what = "condition"): Promise<void> {
    const end = Date.now() + ms;
    while (!pred(this.#stdout, this.#stderr)) {
      if (Date.now() > end) {
        throw new Error(
          `timed out waiting for ${what}\nstdout:\n${this.#stdout.slice(-2000)}\nstderr:\n${this.#stderr}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Wait for the start-up line (programs attached). */
  ready(ms = 20_000): Promise<void> {
    return this.until(
      // A start-up failure ends the wait at once; a note about Docker not answering ("error sending request") does not.
      (_o, e) => /lightmon: capture /.test(e) || /^lightmon: (?!docker: ).*(error|No capture)/im.test(e),
      ms,
      "start",
    );
  }

  /** Parsed JSON lines of stdout so far. */
  events(): Record<string, unknown>[] {
    return this.#stdout.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  }

  /** Wait for exit (bounded). */
  async exit(ms = 10_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const st = await Promise.race([
      this.#done,
      new Promise<never>((_, rej) => timer = setTimeout(() => rej(new Error("lightmon did not exit")), ms)),
    ]);
    clearTimeout(timer);
    await Promise.all(this.#readers);
    return st;
  }

  /** Send a signal, wait for exit. */
  async stop(signal: Deno.Signal = "SIGINT"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch { /* already gone */ }
    return await this.exit();
  }
}

/** Ground truth line printed by build/connector. */
export interface Truth {
  pid: number;
  tid: number;
  sport: number;
  status: string;
}

/** Run build/connector and return its ground truth lines. */
export async function connect(
  addr: string,
  port: number,
  opts: { n?: number; comm?: string; timeoutMs?: number } = {},
): Promise<Truth[]> {
  const args = ["-n", String(opts.n ?? 1)];
  if (opts.comm) args.push("-c", opts.comm);
  if (opts.timeoutMs) args.push("-t", String(opts.timeoutMs));
  const out = await new Deno.Command(CONNECTOR, { args: [...args, addr, String(port)] }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
}

/** A TCP listener that accepts and closes every connection. */
export function listen(hostname: string): { port: number; close: () => void } {
  const l = Deno.listen({ hostname, port: 0 });
  (async () => {
    try {
      for await (const c of l) c.close();
    } catch { /* closed */ }
  })();
  return { port: (l.addr as Deno.NetAddr).port, close: () => l.close() };
}

/** A local port nobody listens on. */
export function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Names of loaded BPF programs that are ours (lm_ prefix), via bpftool. */
export async function ourPrograms(): Promise<string[]> {
  const out = await new Deno.Command("bpftool", { args: ["-j", "prog", "list"] }).output();
  if (!out.success) throw new Error("bpftool prog list failed");
  const progs = JSON.parse(new TextDecoder().decode(out.stdout)) as { name?: string }[];
  return progs.map((p) => p.name ?? "").filter((n) => n.startsWith("lm_"));
}

/** Wait until none of our programs is loaded (the kernel frees them asynchronously). */
export async function assertDetached(ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  let left = await ourPrograms();
  while (left.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    left = await ourPrograms();
  }
  assert.deepEqual(left, [], "BPF programs still loaded after exit");
}

/** Run a command as part of a test setup; throws on failure. */
export async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

/** Who the tests are, as lightmon should name their own connects. */
export interface Self {
  /** The container the tests run in ("" on the host). */
  containerId: string;
  /** Its name, when Docker can say; undefined when nobody can (check the id only). */
  container: string | undefined;
  /** The user name lightmon gives: the host's name for our uid, "" inside a container. */
  user: string;
  /** What the table, log and summary show for the user: the name, else the uid. */
  userOrUid: string;
}

/**
 * Where the tests run, from their own cgroup and uid: on a host, their connects
 * carry no container and the host's user name; inside a Docker container (as
 * many CI systems run them) they carry that container and no host user name.
 */
export function selfIdentity(): Self {
  const cgroup = Deno.readTextFileSync("/proc/self/cgroup");
  const v2 = /^0::(.*)$/m.exec(cgroup)?.[1] ?? "";
  const containerId = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$/.exec(v2)?.[1] ?? "";
  if (!containerId) {
    const passwd = Deno.readTextFileSync("/etc/passwd");
    const uid = Deno.uid();
    const user = passwd.split("\n").map((l) => l.split(":")).find((f) => Number(f[2]) === uid)?.[0] ?? "";
    return { containerId, container: "", user, userOrUid: user || String(uid) };
  }
  let container: string | undefined;
  try {
    const out = new Deno.Command("docker", { args: ["inspect", "-f", "{{.Name}}", containerId] }).outputSync();
    if (out.success) container = new TextDecoder().decode(out.stdout).trim().replace(/^\//, "");
  } catch { /* no docker CLI in here */ }
  return { containerId, container, user: "", userOrUid: String(Deno.uid()) };
}

export const SELF: Self = selfIdentity();

/** Why `path` cannot be written here (a read-only mount), or undefined. */
export function readOnly(path: string): string | undefined {
  try {
    Deno.openSync(path, { write: true }).close();
    return undefined;
  } catch (e) {
    return e instanceof Deno.errors.PermissionDenied || (e instanceof Error && /EROFS|Read-only/.test(e.message))
      ? `${path} is read-only`
      : undefined;
  }
}

/** Check that event `e` names the tests' own process context (container and user). */
export function assertSelf(e: Record<string, unknown>): void {
  assert.equal(e.user, SELF.user, "user");
  assert.equal(e.containerId, SELF.containerId, "containerId");
  if (SELF.container !== undefined) assert.equal(e.container, SELF.container, "container");
}
