/**
 * `lightmon baseline`: one baseline for a fleet, from the baselines its nodes
 * learned, and the check CI runs on the repository that holds it.
 *
 * - `merge FILE... [-o OUT]`: the first file's document is the base (its comments
 *   and order stay); every flow of the others that no rule so far covers is added
 *   to its workload, each workload's list and the workloads sorted, as learning
 *   writes them. Written to OUT (replaced whole) or to stdout.
 * - `check FILE...`: each file parsed as a running lightmon parses it; the first
 *   mistake of each is one line with its file and line, and exit code 2.
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "../usage_error.ts";
import { readTrustedText } from "../config/trusted_file.ts";
import { MAX_BASELINE_BYTES, parseBaseline } from "./file.ts";
import { Baseline, type Rule } from "./rules.ts";

/** What `lightmon baseline` says of itself. */
export const BASELINE_USAGE =
  `Usage: lightmon baseline merge FILE... [-o OUT]   merge node baselines into one (stdout without -o)
       lightmon baseline check FILE...            check baselines as lightmon reads them (exit 2 on a mistake)`;

/** What a merge did. */
export interface Merged {
  text: string;
  /** Flows (lines) in the result. */
  flows: number;
  /** Lines of the later files that were added, and those a rule already covered (or the same line). */
  added: number;
  covered: number;
}

/** Merge baseline texts (name, text): the first is the base. Throws UsageError on a mistake in one. */
export async function mergeBaselines(files: readonly (readonly [string, string])[]): Promise<Merged> {
  const { documentOf, documentText, mergeFlows } = await import("./merge.ts");
  const [first, ...rest] = files;
  const rules = new Baseline();
  await parseBaseline(first[1], first[0], rules);
  const doc = documentOf(first[1]);
  const adding = new Map<string, string[]>();
  const seen = new Map<string, Set<string>>();
  let added = 0;
  let covered = 0;
  for (const [name, text] of rest) {
    const lines: [string, Rule, string][] = [];
    // Parsed whole first: a file with a mistake adds nothing.
    await parseBaseline(text, name, { add: (w, rule, line) => lines.push([w, rule, line]) });
    for (const [w, rule, line] of lines) {
      let there = seen.get(w);
      if (!there) seen.set(w, there = new Set());
      if (there.has(line) || rules.coversRule(w, rule)) {
        covered++;
        continue;
      }
      there.add(line);
      rules.add(w, rule);
      const list = adding.get(w);
      if (list) list.push(line);
      else adding.set(w, [line]);
      added++;
    }
  }
  mergeFlows(doc, adding);
  const out = documentText(doc);
  // The result is read back as a running lightmon would: a merge never writes what it cannot read.
  const flows = await parseBaseline(out, "the merged baseline", new Baseline());
  return { text: out, flows, added, covered };
}

/** Read a file named on the command line, bounded. */
async function readBounded(path: string): Promise<string> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) throw new UsageError(`${path}: not a file`);
    if (info.size > MAX_BASELINE_BYTES) throw new UsageError(`${path}: baseline larger than 32 MiB`);
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(
      `${path}: cannot read the baseline (${e instanceof Deno.errors.NotFound ? "no such file" : e})`,
    );
  }
}

/** Run `lightmon baseline ARGS`; resolves with the exit code. */
export async function baselineCommand(
  args: readonly string[],
  io: { out: (text: string) => void; log: (line: string) => void },
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: { output: { type: "string", short: "o" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    const msg = (e instanceof Error ? e.message : String(e)).split("\n")[0].replace(/\.$/, "");
    throw new UsageError(`baseline: ${msg}; see lightmon baseline --help`);
  }
  const [verb, ...files] = parsed.positionals;
  if (parsed.values.help) {
    io.out(`${BASELINE_USAGE}\n`);
    return 0;
  }
  if (verb !== "merge" && verb !== "check") {
    const what = verb ? `unknown command '${verb}'` : "merge or check?";
    throw new UsageError(`baseline: ${what}; see lightmon baseline --help`);
  }
  if (files.length === 0) throw new UsageError(`baseline ${verb}: name at least one FILE`);
  if (verb === "check") {
    if (parsed.values.output !== undefined) throw new UsageError("baseline check: -o is for merge");
    let failed = 0;
    for (const f of files) {
      try {
        const rules = new Baseline();
        const flows = await parseBaseline(await readBounded(f), f, rules);
        io.log(`lightmon: ${f}: ok, ${flows} flow${flows === 1 ? "" : "s"}`);
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        io.log(`lightmon: ${e.message}`);
        failed++;
      }
    }
    return failed > 0 ? 2 : 0;
  }
  // Merged files steer root processes on every node: each is read as lightmon reads its baseline.
  const texts: [string, string][] = [];
  for (const f of files) {
    try {
      texts.push([f, await readTrustedText(f, { what: "baseline", maxBytes: MAX_BASELINE_BYTES })]);
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(
        `${f}: cannot read the baseline (${e instanceof Deno.errors.NotFound ? "no such file" : e})`,
      );
    }
  }
  const m = await mergeBaselines(texts);
  const out = parsed.values.output;
  if (out === undefined) io.out(m.text);
  else {
    const { replaceFile } = await import("./merge.ts");
    try {
      replaceFile(out, m.text, 0o644);
    } catch (e) {
      throw new UsageError(`baseline merge -o ${out}: ${e instanceof Error ? e.message : e}`);
    }
  }
  io.log(
    `lightmon: merged ${files.length} baseline${files.length === 1 ? "" : "s"}${
      out ? ` into ${out}` : ""
    }: ${m.flows} flows (${m.added} added, ${m.covered} covered already)`,
  );
  return 0;
}
