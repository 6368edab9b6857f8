import assert from "node:assert/strict";
import { bashCompletion, manPage, markedRows, tableRows, TABLES } from "../scripts/gen_docs.ts";
import { RELEASED, VERSION } from "./version.ts";

const root = new URL("../", import.meta.url);
const read = (file: string) => Deno.readTextFile(new URL(file, root));
const STALE = "is stale: run deno run -A scripts/gen_docs.ts";

Deno.test("the reference's field tables are the registry's", async () => {
  const want = tableRows();
  for (const [name, { file, markers }] of Object.entries(TABLES)) {
    assert.deepEqual(markedRows(await read(file), markers), want[name as keyof typeof TABLES], `${file} ${STALE}`);
  }
});

Deno.test("the man page is generated from the flag table and the registry, and man renders it without warnings", async () => {
  assert.equal(await read("docs/lightmon.1"), manPage(), `docs/lightmon.1 ${STALE}`);
  const out = await new Deno.Command("man", {
    args: ["--warnings", "-l", new URL("docs/lightmon.1", root).pathname],
    env: { MANWIDTH: "80", MAN_KEEP_FORMATTING: "0", PAGER: "cat" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  // Overstrikes (bold is c, backspace, c) to plain text, as col -b does.
  let text = "";
  for (const c of new TextDecoder().decode(out.stdout)) text = c === "\b" ? text.slice(0, -1) : text + c;
  assert.equal(new TextDecoder().decode(out.stderr), "");
  assert.ok(out.success);
  assert.match(text, /^LIGHTMON\(1\)/);
  for (const section of ["NAME", "SYNOPSIS", "OPTIONS", "FILTERS", "EVENT FIELDS", "EXIT STATUS", "EXAMPLES"]) {
    assert.match(text, new RegExp(`^${section}$`, "m"), section);
  }
  assert.match(text, /-events LIST/);
  assert.match(text, /^ {7}dname \(exact; \* matches any run of characters\)$/m);
  assert.match(text, new RegExp(`lightmon ${VERSION.replaceAll(".", "\\.")} +${RELEASED}`));
});

/** What the completion offers for a command line typed up to its end. */
async function complete(line: string): Promise<string[]> {
  const script = `source ${new URL("completions/lightmon.bash", root).pathname}
COMP_LINE=$1; COMP_POINT=\${#1}; _lightmon; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const out = await new Deno.Command("bash", { args: ["-c", script, "bash", line], stdout: "piped" }).output();
  assert.ok(out.success);
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "");
}

Deno.test("the bash completion is generated and completes flags, their values and filter fields", async () => {
  assert.equal(await read("completions/lightmon.bash"), bashCompletion(), `completions/lightmon.bash ${STALE}`);
  assert.deepEqual(await complete("lightmon --events "), ["connect", "accept", "close", "dns", "all"]);
  assert.deepEqual(await complete("lightmon --events connect,cl"), ["connect,close"]);
  assert.deepEqual(await complete("lightmon -exclude dn"), ["dname="]);
  // Readline replaces the text after the last word break, or inside an open quote after the quote.
  assert.deepEqual(await complete("lightmon -include dport=53;dn"), ["dname="]);
  assert.deepEqual(await complete("lightmon -include 'dport=53;dn"), ["dport=53;dname="]);
  assert.deepEqual(await complete("lightmon -include event=cl"), ["close"]);
  assert.deepEqual(await complete("lightmon --output=js"), ["json"]);
  assert.deepEqual(await complete("lightmon --strategy tp"), ["tp_btf"]);
  assert.deepEqual(await complete("lightmon --metr"), ["--metrics-addr"]);
  assert.deepEqual(await complete("lightmon -summ"), ["-summary-format"]);
  assert.deepEqual(await complete("lightmon --duration "), []);
});

Deno.test("the version is CHANGELOG.md's newest release, in Keep a Changelog form", async () => {
  const changelog = await read("CHANGELOG.md");
  const releases = [...changelog.matchAll(/^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d\d-\d\d)$/gm)];
  assert.ok(releases.length > 1);
  assert.deepEqual([releases[0][1], releases[0][2]], [VERSION, RELEASED]);
  assert.match(changelog, /keepachangelog\.com/);
});

/** The arguments a line typed into interactive bash, then TAB and Enter, runs `lightmon` with. */
async function typed(line: string): Promise<string> {
  const rc = await Deno.makeTempFile({ suffix: ".sh" });
  try {
    await Deno.writeTextFile(
      rc,
      `source ${
        new URL("completions/lightmon.bash", root).pathname
      }\nlightmon() { printf '<%s>' "$@"; echo; }\nPS1='$ '\n`,
    );
    const child = new Deno.Command("script", {
      args: ["-qfec", `bash --noprofile --rcfile ${rc} -i`, "/dev/null"],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(`${line}\t\nexit\n`));
    await w.close();
    const timer = setTimeout(() => child.kill(), 10_000);
    const out = new TextDecoder().decode((await child.output()).stdout);
    clearTimeout(timer);
    return /<[^\r\n]*/.exec(out)?.[0] ?? out;
  } finally {
    await Deno.remove(rc);
  }
}

Deno.test("in interactive bash, TAB completes filter fields inside quoted expressions without losing what is before", async () => {
  assert.equal(await typed("lightmon -exclude dn"), "<-exclude><dname=>");
  assert.equal(await typed("lightmon -exclude 'dport=53;dn"), "<-exclude><dport=53;dname=>");
  assert.equal(await typed("lightmon -include 'a=1 && ev"), "<-include><a=1 && event=>");
  assert.equal(await typed('lightmon -include "dport=5 || event=cl'), "<-include><dport=5 || event=close>");
  assert.equal(await typed("lightmon --events connect,cl"), "<--events><connect,close>");
});
