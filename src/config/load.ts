/**
 * Finding and reading the config file. The YAML parser is loaded only when there
 * is a file to parse, which keeps it out of most runs' memory.
 *
 * The file steers a root process (what to hide, which socket to trust, where to
 * listen), so, as sshd's StrictModes, a file others could have written is refused.
 * @module
 */
import type { Options } from "../cli/options.ts";
import { UsageError } from "../usage_error.ts";

/** The largest config file read; a real one is a few hundred bytes. */
const MAX_CONFIG_BYTES = 1 << 20;

/**
 * Why a config file with this owner and mode must not be trusted, or undefined.
 * `trusted` are the uids that may own it: root and the user who ran lightmon.
 */
export function untrustedBecause(info: Deno.FileInfo, trusted: readonly number[]): string | undefined {
  if (info.uid !== null && !trusted.includes(info.uid)) return `it belongs to uid ${info.uid}`;
  // A link's own mode means nothing, and /dev/null (-c /dev/null: no config) is 0666 by design.
  const mode = info.mode ?? 0;
  if (info.isFile && mode & 0o022) {
    return `group or others may write it (mode ${(mode & 0o777).toString(8).padStart(4, "0")})`;
  }
  return undefined;
}

/** Root, and the user who ran lightmon (through sudo: the one sudo names). */
function trustedUids(): number[] {
  const uids = [0, Deno.uid() ?? 0];
  const sudo = Number(Deno.env.get("SUDO_UID"));
  if (Number.isInteger(sudo)) uids.push(sudo);
  return uids;
}

/** Read a config file; a missing default file is undefined, a missing given one an error. */
export async function loadConfig(path: string, given: boolean): Promise<Partial<Options> | undefined> {
  let text: string;
  try {
    // Both a link and what it points to must be trustworthy.
    const trusted = trustedUids();
    const target = Deno.statSync(path);
    for (const info of [Deno.lstatSync(path), target]) {
      const why = untrustedBecause(info, trusted);
      if (why) throw new UsageError(`${path}: refusing the config file: ${why}; fix with chown root and chmod go-w`);
    }
    if (target.size > MAX_CONFIG_BYTES) throw new UsageError(`${path}: config file larger than 1 MiB`);
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    if (e instanceof Deno.errors.NotFound && !given) return undefined;
    const why = e instanceof Deno.errors.NotFound ? "no such file" : e instanceof Error ? e.message : String(e);
    throw new UsageError(`-c ${path}: cannot read config file (${why})`);
  }
  const { parseConfig } = await import("./config.ts");
  return parseConfig(text, path);
}
