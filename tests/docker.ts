/**
 * Docker helpers for end-to-end tests: availability, a local test image built with
 * `docker import` (there is no registry), and running short-lived containers.
 * @module
 */
import { bpfUnavailable, CONNECTOR, run } from "./harness.ts";

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
export function dockerTest(name: string, fn: () => Promise<void>): void {
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

let imageReady = false;

/** Build the test image (busybox-static plus build/connector) once. */
export async function ensureImage(): Promise<void> {
  if (imageReady) return;
  const root = await Deno.makeTempDir({ prefix: "lightmon-image-" });
  try {
    await Deno.mkdir(`${root}/bin`);
    await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
    await Deno.chmod(`${root}/bin/busybox`, 0o755);
    for (const a of ["sh", "sleep", "nc", "cat"]) await Deno.symlink("busybox", `${root}/bin/${a}`);
    await Deno.copyFile(CONNECTOR, `${root}/bin/connector`);
    await Deno.chmod(`${root}/bin/connector`, 0o755);
    await run("sh", ["-c", `tar -C ${root} -c . | docker import - ${IMAGE} >/dev/null`]);
    imageReady = true;
  } finally {
    await Deno.remove(root, { recursive: true });
  }
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
