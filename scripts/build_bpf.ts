/**
 * Compile bpf/lightmon.bpf.c into a CO-RE object: build/lightmon.bpf.o.
 * Usage: deno run --allow-run --allow-read --allow-write scripts/build_bpf.ts [outdir]
 * @module
 */

const root = new URL("..", import.meta.url).pathname;
const outDir = Deno.args[0] ?? `${root}build`;
const src = `${root}bpf/lightmon.bpf.c`;
const out = `${outDir}/lightmon.bpf.o`;
const clang = Deno.env.get("CLANG") ?? "clang";

Deno.mkdirSync(outDir, { recursive: true });
const args = [
  "-g", // BTF, which CO-RE relocations and tests/layout_test.ts need
  "-O2",
  "-target",
  "bpf",
  "-D__TARGET_ARCH_x86",
  "-Wall",
  "-Werror",
  "-I",
  `${root}bpf`,
  "-c",
  src,
  "-o",
  out,
];
let result;
try {
  result = await new Deno.Command(clang, { args, stdout: "inherit", stderr: "inherit" }).output();
} catch (e) {
  console.error(`build_bpf: cannot run ${clang} (${e instanceof Error ? e.message : e}); run 'make setup'`);
  Deno.exit(2);
}
if (!result.success) Deno.exit(result.code || 1);
// Drop DWARF, keep BTF: the object shrinks several times over.
const strip = await new Deno.Command(Deno.env.get("LLVM_STRIP") ?? "llvm-strip", {
  args: ["-g", out],
}).output();
if (!strip.success) console.error("build_bpf: llvm-strip failed; the object keeps its DWARF");
console.error(`build_bpf: ${out} (${Deno.statSync(out).size} bytes)`);
