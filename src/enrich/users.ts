/**
 * uid -> user name from the host's passwd file, parsed at the first lookup and
 * re-read when the file changes (checked by `refresh`, from housekeeping: never
 * per event, not even a clock read).
 * @module
 */

/** Parse passwd(5) text into uid -> name; the first entry for a uid wins. */
export function parsePasswd(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 3) continue;
    const uid = Number(f[2]);
    if (Number.isInteger(uid) && !out.has(uid)) out.set(uid, f[0]);
  }
  return out;
}

/** Resolves uids to names; host processes only (a container has its own passwd). */
export class UserNames {
  #path: string;
  #names = new Map<number, string>();
  #mtime = -1;
  #checkedAt = -Infinity;
  #recheckMs: number;
  #now: () => number;

  constructor(path = "/etc/passwd", recheckMs = 1000, now = () => performance.now()) {
    this.#path = path;
    this.#recheckMs = recheckMs;
    this.#now = now;
  }

  /** Re-read the file if it changed, at most every `recheckMs`. */
  refresh(): void {
    const t = this.#now();
    if (t - this.#checkedAt < this.#recheckMs) return;
    this.#checkedAt = t;
    try {
      const st = Deno.statSync(this.#path);
      const m = st.mtime?.getTime() ?? 0;
      if (m === this.#mtime) return;
      this.#names = parsePasswd(Deno.readTextFileSync(this.#path));
      this.#mtime = m;
    } catch {
      // No passwd file (a distroless host): uids stay numeric.
    }
  }

  /** The name of `uid`, or "" when it has none. */
  name(uid: number): string {
    if (this.#checkedAt === -Infinity) this.refresh(); // the first lookup
    return this.#names.get(uid) ?? "";
  }
}
