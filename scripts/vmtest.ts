/**
 * `make vmtest`: the capture-strategy matrix on a second real kernel (Debian 12's
 * Linux 6.1, which allows fentry and kprobes) under qemu, and on the host kernel.
 *
 * It builds an initramfs holding busybox, the runtime and bundle from dist/lightmon,
 * libbpf and the libraries both need, the static test client and the bundled
 * tests/vm/driver.ts; boots it with TCG (nested KVM hangs here); and parses the
 * driver's LMTEST lines from the serial console. Exit 1 on any failed check, a
 * hang (bounded) or a kernel panic. No timing is taken inside the VM: emulated
 * time means nothing.
 *
 * Env: VMTEST_CACHE (kernel package cache, default /var/cache/lightmon-vmtest),
 * VMTEST_KERNEL (a vmlinuz with BTF to use instead of Debian's 6.1 package), and
 * for such a kernel what to expect of it: VMTEST_AUTO (the strategy auto must pick,
 * default fentry) and VMTEST_UNAVAILABLE (strategies it must refuse, e.g. "fentry").
 * @module
 */
const root = new URL("..", import.meta.url).pathname;
const cache = Deno.env.get("VMTEST_CACHE") ?? "/var/cache/lightmon-vmtest";
const work = `${root}build/vmtest`;
const dec = new TextDecoder();
const VM_TIMEOUT_MS = 240_000;

async function sh(cmd: string, args: string[], opts: Deno.CommandOptions = {}): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", ...opts }).output();
  if (!r.success) throw new Error(`${cmd} ${args.join(" ")}: ${dec.decode(r.stderr).trim()}`);
  return dec.decode(r.stdout);
}

function log(s: string): void {
  console.error(`vmtest: ${s}`);
}

/** Debian's newest 6.1 cloud kernel, downloaded once into the cache. */
async function kernel(): Promise<{ vmlinuz: string; name: string }> {
  const given = Deno.env.get("VMTEST_KERNEL");
  if (given) return { vmlinuz: given, name: given.split("/").pop()! };
  Deno.mkdirSync(cache, { recursive: true });
  let deb = [...Deno.readDirSync(cache)].map((e) => e.name).filter((n) => /^linux-image-6\.1\..*\.deb$/.test(n)).sort()
    .pop();
  if (!deb) {
    const search = async () =>
      (await sh("apt-cache", ["search", "--names-only", "^linux-image-6\\.1\\.0-[0-9]+-cloud-amd64-unsigned$"]))
        .trim().split("\n").map((l) => l.split(" ")[0]).filter(Boolean);
    let pkgs = await search();
    if (pkgs.length === 0) {
      log("no 6.1 kernel package in the apt lists; running apt-get update");
      await sh("apt-get", ["update", "-qq"]);
      pkgs = await search();
    }
    pkgs.sort((a, b) => Number(a.split("-")[3]) - Number(b.split("-")[3]));
    const pkg = pkgs.pop();
    if (!pkg) throw new Error("no linux-image-6.1.0-*-cloud-amd64-unsigned package (apt-get update?)");
    log(`downloading ${pkg} into ${cache}`);
    await sh("apt-get", ["download", "-o", "APT::Sandbox::User=root", pkg], { cwd: cache });
    deb = [...Deno.readDirSync(cache)].map((e) => e.name).filter((n) => n.startsWith(pkg)).pop()!;
  }
  const dir = `${cache}/${deb.replace(/\.deb$/, "")}`;
  try {
    Deno.statSync(dir);
  } catch {
    await sh("dpkg-deb", ["-x", `${cache}/${deb}`, dir]);
  }
  const boot = [...Deno.readDirSync(`${dir}/boot`)].find((e) => e.name.startsWith("vmlinuz-"))!.name;
  return { vmlinuz: `${dir}/boot/${boot}`, name: boot.replace(/^vmlinuz-/, "") };
}

/** Shared libraries a binary needs, with the loader. */
async function libs(bins: string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const b of bins) {
    for (const m of (await sh("ldd", [b])).matchAll(/(\/[^\s]+\.so[^\s]*)/g)) out.add(m[1]);
  }
  return [...out];
}

function copy(src: string, dst: string, mode?: number): void {
  Deno.mkdirSync(dst.slice(0, dst.lastIndexOf("/")), { recursive: true });
  Deno.copyFileSync(src, dst);
  if (mode) Deno.chmodSync(dst, mode);
}

/** The runtime and the bundle, taken out of dist/lightmon's payload. */
async function unpackDist(into: string): Promise<void> {
  const dist = `${root}dist/lightmon`;
  const head = dec.decode(Deno.readFileSync(dist).subarray(0, 4096));
  const skip = /^skip=(\d+)$/m.exec(head)?.[1];
  if (!skip) throw new Error("dist/lightmon is not the self-extracting build");
  Deno.mkdirSync(into, { recursive: true });
  await sh("sh", ["-c", `tail -c +${Number(skip)} "${dist}" | tar -xzf - -C "${into}"`]);
}

async function initramfs(): Promise<string> {
  const stage = `${work}/root`;
  try {
    Deno.removeSync(stage, { recursive: true });
  } catch { /* first run */ }
  await unpackDist(`${stage}/opt/lightmon`);
  const denoBin = `${stage}/opt/lightmon/bin/deno`;
  const libbpf = (await sh("sh", ["-c", "readlink -f $(ldconfig -p | awk '/libbpf.so.1 /{print $NF; exit}')"])).trim();
  for (const l of await libs([denoBin, libbpf])) copy(l, `${stage}${l}`);
  copy(libbpf, `${stage}/usr/lib/x86_64-linux-gnu/libbpf.so.1`);
  copy("/bin/busybox", `${stage}/bin/busybox`, 0o755);
  copy(`${root}build/connector`, `${stage}/opt/vmtest/connector`, 0o755);
  await sh(Deno.execPath(), [
    "bundle",
    "--quiet",
    "--platform",
    "deno",
    "-o",
    `${stage}/opt/vmtest/driver.js`,
    `${root}tests/vm/driver.ts`,
  ]);
  Deno.mkdirSync(`${stage}/etc`, { recursive: true });
  Deno.writeTextFileSync(`${stage}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  Deno.writeTextFileSync(`${stage}/etc/group`, "root:x:0:\n");
  const lightmon = JSON.stringify([
    "/opt/lightmon/bin/deno",
    "run",
    "--quiet",
    "--no-prompt",
    "--no-config",
    "--allow-all",
    "/opt/lightmon/app/src/main.js",
  ]);
  Deno.writeTextFileSync(
    `${stage}/init`,
    `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root DENO_DIR=/tmp/deno DENO_NO_UPDATE_CHECK=1
mkdir -p /dev /proc /sys /tmp /root /run
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
echo "LMTEST-BOOT $(uname -r)"
/opt/lightmon/bin/deno run --quiet --no-config --allow-all /opt/vmtest/driver.js \\
  --lightmon '${lightmon}' --connector /opt/vmtest/connector \
  --auto ${Deno.env.get("VMTEST_AUTO") ?? "fentry"} --unavailable "${Deno.env.get("VMTEST_UNAVAILABLE") ?? ""}"
echo "LMTEST-EXIT $?"
poweroff -f
`,
  );
  Deno.chmodSync(`${stage}/init`, 0o755);
  const out = `${work}/initramfs.cpio.gz`;
  await sh("sh", ["-c", `cd "${stage}" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "${out}"`]);
  log(`initramfs ${(Deno.statSync(out).size / 1e6).toFixed(1)} MB`);
  return out;
}

interface Summary {
  kernel: string;
  pass: number;
  fail: number;
  auto?: string;
  available: string[];
}

/** Run the driver somewhere, collect its LMTEST lines. */
function parse(output: string): { failures: string[]; summary?: Summary } {
  const failures: string[] = [];
  let summary: Summary | undefined;
  for (const line of output.split(/\r?\n/)) {
    const m = /LMTEST (\{.*\})\s*$/.exec(line);
    if (m) {
      const r = JSON.parse(m[1]);
      if (!r.ok) failures.push(`${r.strategy}: ${r.check}: ${r.detail}`);
    }
    const s = /LMTEST-SUMMARY (\{.*\})\s*$/.exec(line);
    if (s) summary = JSON.parse(s[1]);
  }
  return { failures, summary };
}

async function hostMatrix(): Promise<Summary> {
  log("host kernel matrix");
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-all",
      `${root}tests/vm/driver.ts`,
      "--lightmon",
      JSON.stringify([`${root}lightmon`]),
      "--connector",
      `${root}build/connector`,
      "--unavailable",
      "fentry,kprobe",
      "--auto",
      "tp_btf",
    ],
    stdout: "piped",
  }).output();
  const { failures, summary } = parse(dec.decode(r.stdout));
  if (!summary || failures.length > 0) throw new Error(`host matrix failed:\n${failures.join("\n")}`);
  return summary;
}

async function vmMatrix(vmlinuz: string, initrd: string): Promise<Summary> {
  log("booting the VM (TCG)");
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), VM_TIMEOUT_MS);
  const child = new Deno.Command("qemu-system-x86_64", {
    args: [
      "-accel",
      "tcg",
      "-cpu",
      "max",
      "-m",
      "2048",
      "-smp",
      "2",
      "-kernel",
      vmlinuz,
      "-initrd",
      initrd,
      "-append",
      "console=ttyS0 panic=-1 oops=panic quiet",
      "-nographic",
      "-no-reboot",
      "-nic",
      "none",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: ac.signal,
  }).spawn();
  let console_ = "";
  for await (const chunk of child.stdout) {
    const text = dec.decode(chunk, { stream: true });
    console_ += text;
    for (const line of text.split("\n")) if (/LMTEST (\{.*"ok":false)/.test(line)) log(`VM: ${line.trim()}`);
  }
  const st = await child.status;
  clearTimeout(timer);
  Deno.writeTextFileSync(`${work}/console.log`, console_);
  if (ac.signal.aborted) throw new Error(`the VM did not finish in ${VM_TIMEOUT_MS / 1000}s (see ${work}/console.log)`);
  if (/Kernel panic/.test(console_)) throw new Error(`kernel panic (see ${work}/console.log)`);
  const { failures, summary } = parse(console_);
  const exit = /LMTEST-EXIT (\d+)/.exec(console_)?.[1];
  if (!summary || failures.length > 0 || exit !== "0") {
    throw new Error(
      `VM matrix failed (qemu exit ${st.code}, driver exit ${exit ?? "none"}):\n${
        failures.join("\n")
      }\n(see ${work}/console.log)`,
    );
  }
  return summary;
}

function row(s: Summary): string {
  const cell = (x: string) => (s.available.includes(x) ? "yes" : "no");
  return `| ${s.kernel} | ${cell("fentry")} | ${cell("kprobe")} | ${cell("tp_btf")} | ${
    cell("tracepoint")
  } | ${s.auto} | ${s.pass} checks pass |`;
}

Deno.mkdirSync(work, { recursive: true });
const t0 = Date.now();
try {
  const host = await hostMatrix();
  const k = await kernel();
  const initrd = await initramfs();
  const vm = await vmMatrix(k.vmlinuz, initrd);
  console.log("| kernel | fentry | kprobe | tp_btf | tracepoint | auto picks | result |");
  console.log("|---|---|---|---|---|---|---|");
  console.log(row(vm));
  console.log(row(host));
  log(`done in ${((Date.now() - t0) / 1000).toFixed(0)}s`);
  console.log(`vmtest: ${vm.pass + host.pass} passed, ${vm.fail + host.fail} failed`);
} catch (e) {
  log(e instanceof Error ? e.message : String(e));
  Deno.exit(1);
}
