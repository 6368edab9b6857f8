/**
 * Finding and reading the config file. The YAML parser is loaded only when there
 * is a file to parse, which keeps it out of most runs' memory.
 *
 * The file steers a root process (what to hide, which socket to trust, where to
 * listen), so, as sshd's StrictModes, a file others could have written is refused
 * (`trusted_file.ts`).
 * @module
 */
import type { Options } from "../cli/options.ts";
import { UsageError } from "../usage_error.ts";
import { readTrustedText } from "./trusted_file.ts";

/** The largest config file read; a real one is a few hundred bytes. */
const MAX_CONFIG_BYTES = 1 << 20;

/** Read a config file; a missing default file is undefined, a missing given one an error. */
export async function loadConfig(path: string, given: boolean): Promise<Partial<Options> | undefined> {
  let text: string;
  try {
    text = await readTrustedText(path, { what: "config file", maxBytes: MAX_CONFIG_BYTES });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (e instanceof Deno.errors.NotFound && !given) return undefined;
    const why = e instanceof Deno.errors.NotFound ? "no such file" : e instanceof Error ? e.message : String(e);
    throw new UsageError(`-c ${path}: cannot read config file (${why})`);
  }
  const { parseConfig } = await import("./config.ts");
  return parseConfig(text, path);
}
