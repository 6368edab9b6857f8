/**
 * `make dist`: build dist/lightmon, one executable file with the Deno runtime, the
 * bundled program and the BPF object inside.
 *
 * `deno compile` is tried first; it needs a downloadable runtime (or DENORT_BIN) and
 * its output must pass a smoke test. Otherwise the file is a self-extracting shell
 * stub plus a tar.gz archive (scripts/dist_stub.sh). The build says which it made.
 * @module
 */
const root = new URL("..", import.meta.url).pathname;
const deno = Deno.execPath();
const out = `${root}dist/lightmon`;
const stage = `${root}dist/stage`;
const object = `${root}build/lightmon.bpf.o`;

async function sh(cmd: string, args: string[], opts: { timeoutMs?: number } = {}) {
  const ac = new AbortController();
  const t = opts.timeoutMs ? setTimeout(() => ac.abort(), opts.timeoutMs) : undefined;
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", signal: ac.signal }).output();
    return { ok: r.success, out: new TextDecoder().decode(r.stdout), err: new TextDecoder().decode(r.stderr) };
  } finally {
    clearTimeout(t);
  }
}

Deno.statSync(object); // `make dist` builds it first
Deno.mkdirSync(`${root}dist`, { recursive: true });

// 1. deno compile, where its runtime can be had. It refuses to overwrite a file it did
// not make (the self-extracting one), which would hide why it really failed.
try {
  Deno.removeSync(out);
} catch { /* first build */ }
const compiled = await sh(deno, [
  "compile",
  "--allow-all",
  "--no-prompt",
  "--include",
  object,
  "--output",
  out,
  `${root}src/main.ts`,
], { timeoutMs: 120_000 }).catch((e) => ({ ok: false, out: "", err: String(e) }));
if (compiled.ok && (await sh(out, ["--help"])).ok) {
  console.error(`build_dist: ${out} built with deno compile (${Deno.statSync(out).size} bytes)`);
  Deno.exit(0);
}
// The most telling line: a failed runtime download, or the first error.
// deno-lint-ignore no-control-regex
const lines = compiled.err.split("\n").map((l) => l.replace(/\x1b\[[0-9;]*m/g, "").trim());
const why = lines.find((l) => /request for url|DENORT_BIN/.test(l)) ?? lines.find((l) => /error/i.test(l)) ??
  "no output";
console.error(
  `build_dist: deno compile did not produce a working binary (${why.trim()}); building a self-extracting file`,
);

// 2. Self-extracting file: bundle, stage, archive, prepend the stub.
try {
  Deno.removeSync(stage, { recursive: true });
} catch { /* first build */ }
for (const d of ["bin", "app/build"]) Deno.mkdirSync(`${stage}/${d}`, { recursive: true });
// Split into chunks, as the source tree is in modules: what main.ts imports only when it
// needs it (the monitor, the outputs, the npm packages and the node: modules they use) is
// then compiled and evaluated after the BPF object's load has started, not before (Deno
// reads every chunk a literal import names at start). One file held that load back ~35 ms.
const bundled = await sh(deno, [
  "bundle",
  "--platform",
  "deno",
  "--code-splitting",
  "--outdir",
  `${stage}/app/src`,
  `${root}src/main.ts`,
]);
if (!bundled.ok) {
  console.error(`build_dist: deno bundle failed:\n${bundled.err}`);
  Deno.exit(1);
}
Deno.copyFileSync(deno, `${stage}/bin/deno`);
Deno.chmodSync(`${stage}/bin/deno`, 0o755);
Deno.copyFileSync(object, `${stage}/app/build/lightmon.bpf.o`);
const archive = `${root}dist/payload.tar.gz`;
const tar = await sh("tar", ["-C", stage, "--owner=0", "--group=0", "-czf", archive, "bin", "app"]);
if (!tar.ok) {
  console.error(`build_dist: tar failed: ${tar.err}`);
  Deno.exit(1);
}
const payload = Deno.readFileSync(archive);
const hash = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", payload)))
  .slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
let stub = Deno.readTextFileSync(`${root}scripts/dist_stub.sh`).replace("@@HASH@@", hash);
// The archive starts right after the stub: tail -c +N counts from 1.
const withSkip = (n: number) => stub.replace("@@SKIP@@", String(n).padStart(10, "0"));
stub = withSkip(new TextEncoder().encode(withSkip(0)).length + 1);
const file = new Uint8Array(new TextEncoder().encode(stub).length + payload.length);
file.set(new TextEncoder().encode(stub));
file.set(payload, file.length - payload.length);
Deno.writeFileSync(out, file, { mode: 0o755 });
Deno.chmodSync(out, 0o755);
Deno.removeSync(archive);
Deno.removeSync(stage, { recursive: true });
console.error(`build_dist: ${out} is a self-extracting file (${file.length} bytes, payload ${hash})`);
