/**
 * Reading a file that steers a root process (config.yaml, a baseline). As sshd's
 * StrictModes, a file others could have written is refused: it must belong to root
 * or to the user who ran lightmon, and neither group nor others may write it. A
 * symbolic link is followed only when its own owner is trusted too, and the file
 * read is the file checked: the open descriptor's device and inode must be the
 * ones stat named, so a link swapped in between the check and the read is caught.
 * @module
 */
import { UsageError } from "../usage_error.ts";

/**
 * Why a file with this owner and mode must not be trusted, or undefined.
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
export function trustedUids(): number[] {
  const uids = [0, Deno.uid() ?? 0];
  const sudo = Number(Deno.env.get("SUDO_UID"));
  if (Number.isInteger(sudo)) uids.push(sudo);
  return uids;
}

/**
 * Why lightmon, as root, must not keep a file it reads or writes in directory `dir`,
 * or undefined. The directory's owner can replace any name in it, so it must be
 * trusted (root, or the user who ran lightmon); one that group or others may write
 * is refused unless it is sticky and root's (as /tmp), where nobody can replace a
 * file of ours. A symlink is refused: its target is what would be checked.
 */
export function untrustedDirBecause(dir: string, trusted: readonly number[] = trustedUids()): string | undefined {
  const st = Deno.lstatSync(dir);
  if (st.isSymlink) return "it is a symlink; give its real path";
  if (!st.isDirectory) return "it is not a directory";
  const mode = st.mode ?? 0;
  if (st.uid !== null && !trusted.includes(st.uid)) return `it belongs to uid ${st.uid}`;
  if ((mode & 0o022) !== 0 && ((mode & 0o1000) === 0 || st.uid !== 0)) {
    return `group or others may write it (mode ${(mode & 0o7777).toString(8).padStart(4, "0")}) and it is not ` +
      "a sticky directory of root's";
  }
  return undefined;
}

/** The directory a path names its file in (`.` for a bare name). */
export function dirOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : path.slice(0, slash) || "/";
}

/** What the file is, for messages: `config file`, `baseline`. */
export interface TrustedRead {
  what: string;
  /** The largest file read, in bytes. */
  maxBytes: number;
}

/**
 * Read a trusted file's text. Throws UsageError naming the file and the fix when it
 * is not trusted or too large; lets Deno's errors (NotFound, PermissionDenied) through.
 */
export async function readTrustedText(path: string, o: TrustedRead): Promise<string> {
  const trusted = trustedUids();
  const link = Deno.lstatSync(path);
  const dirWhy = untrustedDirBecause(dirOf(path), trusted);
  if (dirWhy) {
    throw new UsageError(`${path}: refusing the ${o.what}: its directory ${dirOf(path)}: ${dirWhy}`);
  }
  const target = link.isSymlink ? Deno.statSync(path) : link;
  for (const info of link.isSymlink ? [link, target] : [target]) {
    const why = untrustedBecause(info, trusted);
    if (why) throw new UsageError(`${path}: refusing the ${o.what}: ${why}; fix with chown root and chmod go-w`);
  }
  using file = await Deno.open(path, { read: true });
  const opened = await file.stat();
  if (opened.dev !== target.dev || opened.ino !== target.ino) {
    throw new UsageError(`${path}: refusing the ${o.what}: it was replaced while being read; try again`);
  }
  if (opened.size > o.maxBytes) {
    throw new UsageError(
      `${path}: ${o.what} larger than ${o.maxBytes >= 1 << 20 ? `${o.maxBytes >> 20} MiB` : `${o.maxBytes} bytes`}`,
    );
  }
  // Read at most one byte past the limit: a file that grew since the stat is refused, not read whole.
  const buf = new Uint8Array(Math.min(o.maxBytes, Math.max(opened.size, 0)) + 1);
  let n = 0;
  for (;;) {
    const got = await file.read(buf.subarray(n));
    if (got === null) break;
    n += got;
    if (n === buf.length) break;
  }
  if (n > o.maxBytes) throw new UsageError(`${path}: ${o.what} grew past its limit while being read`);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(0, n));
  } catch {
    throw new UsageError(`${path}: ${o.what} is not UTF-8 text`);
  }
}
