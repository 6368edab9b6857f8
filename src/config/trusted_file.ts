/**
 * Reading a file that steers a root process (config.yaml, a baseline). As sshd's
 * StrictModes, a file others could have written is refused: it must belong to root
 * or to the user who ran lightmon, and neither group nor others may write it. Links
 * are followed one by one, each only when its own owner is trusted, and every
 * directory they lead through must be trusted too (as a Kubernetes ConfigMap's
 * `file -> ..data/file`, `..data -> ..2026_12_03_...`); the file read is the file
 * checked: it is opened by its resolved path, and the open descriptor's device and
 * inode must be the ones checked, so a link swapped in between is caught.
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
export function untrustedDirBecause(
  dir: string,
  trusted: readonly number[] = trustedUids(),
  reading = false,
): string | undefined {
  const st = Deno.lstatSync(dir);
  if (st.isSymlink) return "it is a symlink; give its real path";
  if (!st.isDirectory) return "it is not a directory";
  const mode = st.mode ?? 0;
  if (st.uid !== null && !trusted.includes(st.uid)) return `it belongs to uid ${st.uid}`;
  // Read from, a directory on a read-only mount is written by nobody here, whatever its mode (kubelet
  // makes a ConfigMap volume's 0777 and mounts it read-only into the pod).
  if ((mode & 0o022) !== 0 && ((mode & 0o1000) === 0 || st.uid !== 0) && !(reading && onReadOnlyMount(dir))) {
    return `group or others may write it (mode ${(mode & 0o7777).toString(8).padStart(4, "0")}) and it is not ` +
      "a sticky directory of root's";
  }
  return undefined;
}

/**
 * Whether `dir` lies on a mount that is read-only (its per-mount options in
 * /proc/self/mountinfo say `ro`): the mount with the longest mount point that is
 * `dir` or one of its parents. `dir` has no links in it (the caller resolved them).
 */
export function onReadOnlyMount(dir: string, mountinfo?: string): boolean {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = Deno.readTextFileSync("/proc/self/mountinfo");
    } catch {
      return false;
    }
  }
  const abs = dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
  let best = "";
  let ro = false;
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 6) continue;
    // Octal escapes (\040 for a space) as the kernel writes them.
    const point = f[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
    const under = point === "/" || abs === point || abs.startsWith(`${point}/`);
    // The last of equal mount points is the one on top.
    if (under && point.length >= best.length) {
      best = point;
      ro = f[5].split(",").includes("ro");
    }
  }
  return ro;
}

/**
 * The path `path` names with every link resolved, each link checked on the way:
 * its own owner must be trusted, and every directory the resolution passes through
 * after `path`'s own directory (checked by the caller) must be trusted for reading.
 * At most 16 links. Throws UsageError naming the file and the link or directory.
 */
export function resolveTrusted(path: string, trusted: readonly number[], what: string): string {
  const fail = (why: string): never => {
    throw new UsageError(`${path}: refusing the ${what}: ${why}`);
  };
  let dir = dirOf(path);
  let rest = [path.slice(path.lastIndexOf("/") + 1)];
  let links = 0;
  while (rest.length > 0) {
    const name = rest.shift()!;
    if (name === "" || name === ".") continue;
    if (name === "..") {
      dir = dir === "/" ? "/" : dirOf(dir);
      continue;
    }
    const p = dir === "/" ? `/${name}` : `${dir}/${name}`;
    const st = Deno.lstatSync(p);
    if (st.isSymlink) {
      if (++links > 16) fail("more than 16 links in its path");
      const why = untrustedBecause(st, trusted);
      if (why) fail(`the link ${p}: ${why}`);
      const target = Deno.readLinkSync(p);
      if (target.startsWith("/")) dir = "/";
      rest = [...target.split("/"), ...rest];
      continue;
    }
    if (rest.some((r) => r !== "" && r !== ".")) {
      const why = untrustedDirBecause(p, trusted, true);
      if (why) fail(`the directory ${p} it is in: ${why}`);
      dir = p;
      continue;
    }
    return p;
  }
  return fail("it names a directory");
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
 * What version of the file `path` names now (through its links): its resolved path,
 * device, inode, size and modification time; "" when there is none. A ConfigMap
 * update (a new `..data`) or an edit changes it.
 */
export function fileVersion(path: string): string {
  try {
    const real = Deno.realPathSync(path);
    const st = Deno.statSync(real);
    return `${real}:${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
  } catch {
    return "";
  }
}

/**
 * Read a trusted file's text. Throws UsageError naming the file and the fix when it
 * is not trusted or too large; lets Deno's errors (NotFound, PermissionDenied) through.
 */
export async function readTrustedText(path: string, o: TrustedRead): Promise<string> {
  const trusted = trustedUids();
  Deno.lstatSync(path); // NotFound as itself
  const dirWhy = untrustedDirBecause(dirOf(path), trusted, true);
  if (dirWhy) {
    throw new UsageError(`${path}: refusing the ${o.what}: its directory ${dirOf(path)}: ${dirWhy}`);
  }
  const real = resolveTrusted(path, trusted, o.what);
  const target = Deno.lstatSync(real);
  const why = untrustedBecause(target, trusted);
  if (why) throw new UsageError(`${path}: refusing the ${o.what}: ${why}; fix with chown root and chmod go-w`);
  using file = await Deno.open(real, { read: true });
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
