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
  // Readline replaces the text after the last word break (';' here): only the field's part is offered.
  assert.deepEqual(await complete("lightmon -include 'dport=53;dn"), ["dname="]);
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
