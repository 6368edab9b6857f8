/**
 * Docker helpers for end-to-end tests: availability, a local test image built with
 * `docker import` (there is no registry), and running short-lived containers.
 * @module
 */
import { bpfUnavailable, CONNECTOR, type InContainer, ROOT, run, skippedInContainer } from "./harness.ts";

export const IMAGE = "lightmon-test:latest";

/** Why Docker tests cannot run here, or undefined. */
export async function dockerUnavailable(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("docker", { args: ["info", "--format", "{{.ServerVersion}}"] }).output();
    if (!out.success) return "dockerd is not running";
  } catch {
    return "docker is not installed";
  }
  return undefined;
}

/**
 * Deno.test for tests that need the kernel and dockerd; skipped with the reason,
 * or failed when LIGHTMON_REQUIRE_DOCKER=1 / LIGHTMON_REQUIRE_BPF=1.
 */
export function dockerTest(name: string, fn: () => Promise<void>, opts: InContainer = {}): void {
  if (skippedInContainer(name, opts)) return;
  const why = bpfUnavailable();
  const required = Deno.env.get("LIGHTMON_REQUIRE_DOCKER") === "1" || Deno.env.get("LIGHTMON_REQUIRE_BPF") === "1";
  Deno.test({
    name,
    ignore: why !== undefined && !required,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async (t) => {
      if (why) throw new Error(`kernel tests required but ${why}`);
      const noDocker = await dockerUnavailable();
      if (noDocker) {
        if (Deno.env.get("LIGHTMON_REQUIRE_DOCKER") === "1") {
          throw new Error(`LIGHTMON_REQUIRE_DOCKER=1 but ${noDocker}`);
        }
        console.error(`skipping "${t.name}": ${noDocker}`);
        return;
      }
      await ensureImage();
      await fn();
    },
  });
}

const imported = new Set<string>();

/** `docker import` a root file system that `fill` writes into a fresh directory, once per run. */
async function importImage(image: string, fill: (root: string) => Promise<void>): Promise<void> {
  if (imported.has(image)) return;
  const root = await Deno.makeTempDir({ prefix: "lightmon-image-" });
  try {
    await fill(root);
    await run("sh", ["-c", `tar -C ${root} -c . | docker import - ${image} >/dev/null`]);
    imported.add(image);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** Build the test image (busybox-static plus build/connector) once. */
export function ensureImage(): Promise<void> {
  return importImage(IMAGE, async (root) => {
    await Deno.mkdir(`${root}/bin`);
    await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
    await Deno.chmod(`${root}/bin/busybox`, 0o755);
    for (const a of ["sh", "sleep", "nc", "cat"]) await Deno.symlink("busybox", `${root}/bin/${a}`);
    await Deno.copyFile(CONNECTOR, `${root}/bin/connector`);
    await Deno.chmod(`${root}/bin/connector`, 0o755);
  });
}

/** A unique container name for this test run. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Deno.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * `docker run --rm` a container on the host network (so 127.0.0.1 is the host's
 * loopback) and return its id and what it printed.
 */
export async function runContainer(
  name: string,
  cmd: string[],
  extra: string[] = [],
): Promise<{ id: string; stdout: string }> {
  const cidfile = `${await Deno.makeTempDir()}/cid`;
  const out = await new Deno.Command("docker", {
    args: ["run", "--rm", "--network", "host", "--cidfile", cidfile, "--name", name, ...extra, IMAGE, ...cmd],
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`docker run ${name}: ${new TextDecoder().decode(out.stderr)}`);
  const id = (await Deno.readTextFile(cidfile)).trim();
  await Deno.remove(cidfile.replace(/\/cid$/, ""), { recursive: true });
  return { id, stdout };
}

export const NODE_IMAGE = "lightmon-node-test:latest";

/**
 * An image like the one deploy/daemonset.yaml names (debian:12-slim plus libbpf1):
 * a shell, the coreutils the dist stub uses, libbpf and the C libraries, copied
 * from this host with their dependencies. The dist file itself is mounted in.
 */
export function ensureNodeImage(): Promise<void> {
  return importImage(NODE_IMAGE, async (root) => {
    const tools = [
      "dash",
      "id",
      "stat",
      "mktemp",
      "tail",
      "mv",
      "rm",
      "mkdir",
      "chmod",
      "tar",
      "gzip",
      "cat",
      "setpriv",
    ]
      .map((t) => `/usr/bin/${t}`);
    const libbpf = "/usr/lib/x86_64-linux-gnu/libbpf.so.1";
    const deno = `${ROOT}node_modules/deno/deno`;
    const files = new Set<string>([...tools, libbpf, "/etc/ld.so.cache"]);
    for (const bin of [...tools, libbpf, deno]) {
      const ldd = await run("ldd", [bin]);
      for (const m of ldd.matchAll(/(\/\S+\.so[.\d]*)/g)) files.add(m[1]);
    }
    for (const f of files) {
      const to = `${root}${f}`;
      await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
      await Deno.copyFile(await Deno.realPath(f), to); // the file, not a symlink to it
      await Deno.chmod(to, 0o755);
    }
    await Deno.symlink("dash", `${root}/usr/bin/sh`);
    for (const d of ["bin", "lib", "lib64"]) {
      if (!(await exists(`${root}/${d}`))) await Deno.symlink(`usr/${d}`, `${root}/${d}`);
    }
    for (const d of ["tmp", "proc", "sys", "dev", "etc", "run", "var/cache", "usr/local/bin"]) {
      await Deno.mkdir(`${root}/${d}`, { recursive: true });
    }
    await Deno.writeTextFile(`${root}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

export const CI_IMAGE = "lightmon-ci-test:latest";

/**
 * An image to run the test suite in, as CI systems run jobs in containers: an
 * empty Debian-shaped root (merged /usr, /var/run -> /run, a passwd with root)
 * onto which the host's /usr is mounted read-only.
 */
export function ensureCiImage(): Promise<void> {
  return importImage(CI_IMAGE, async (root) => {
    for (const d of ["tmp", "proc", "sys", "dev", "etc", "run", "var/tmp", "root", "work"]) {
      await Deno.mkdir(`${root}/${d}`, { recursive: true });
    }
    await Deno.chmod(`${root}/tmp`, 0o1777);
    for (const d of ["bin", "lib", "lib64", "sbin"]) await Deno.symlink(`usr/${d}`, `${root}/${d}`);
    await Deno.symlink("../run", `${root}/var/run`);
    await Deno.writeTextFile(`${root}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  });
}
