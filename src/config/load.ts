/**
 * Finding and reading the config file. The YAML parser is loaded only when there
 * is a file to parse, which keeps it out of most runs' memory.
 * @module
 */
import type { Options } from "../cli/options.ts";
import { UsageError } from "../usage_error.ts";

/** Read a config file; a missing default file is no error, a missing given one is. */
export async function loadConfig(path: string, given: boolean): Promise<Partial<Options>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && !given) return {};
    const why = e instanceof Deno.errors.NotFound ? "no such file" : e instanceof Error ? e.message : String(e);
    throw new UsageError(`-c ${path}: cannot read config file (${why})`);
  }
  const { parseConfig } = await import("./config.ts");
  return parseConfig(text, path);
}
