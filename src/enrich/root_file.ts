/**
 * Reading a runtime's state file as root: only a regular file root owns, never
 * through a link at its last name, never blocking on a FIFO, and never more than
 * a bound. Runtimes (containerd, Docker, the CNI plugins) write their state as
 * root; a file that is not root's, or that is too large, is not their word.
 * @module
 */
import fs from "node:fs";

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

/**
 * The text of `path`, or undefined when it is missing, not a regular file of
 * root's, or larger than `maxBytes`. The checks are made on the open descriptor.
 */
export function readRootFile(path: string, maxBytes: number): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.uid !== 0 || st.size > maxBytes) return undefined;
    // One byte past the bound: a file that grew since the stat is refused, not read whole.
    const buf = new Uint8Array(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n === buf.length) return undefined;
    }
    return new TextDecoder().decode(buf.subarray(0, n));
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
