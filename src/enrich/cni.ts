/**
 * Pod addresses on a node without Docker, from what the node itself wrote: the
 * CNI host-local IPAM plugin's reservations (`/var/lib/cni/networks/NET/ADDRESS`,
 * holding the container id the plugin was given, for CRI the pod sandbox's id,
 * then the interface), and the sandbox's pod from containerd's bundle. Only a
 * directory and files root owns and only root may write are read; a file is read
 * through its checked descriptor, bounded. Rescanned as soon as inotify says a
 * directory changed (the plugin writes a reservation before the runtime starts
 * the pod, so the pod's first connection finds it), and every second besides: a
 * new reservation claims its address from the file's time, a removed one ends the
 * claim when the scan sees it gone (a record in between, if another pod took the
 * address at once, sees two holders and names nobody).
 * @module
 */
import { untrustedDirBecause } from "../config/trusted_file.ts";
import type { PeerName } from "../event.ts";
import { canonicalAddress, type PeerAddresses } from "./peers.ts";
import { readRootFile } from "./root_file.ts";
import { CONTAINERD_TASKS, sandboxPod } from "./state_files.ts";

/** Where host-local keeps its reservations by default. */
export const CNI_NETWORKS = "/var/lib/cni/networks";
/** A reservation is an id and an interface name: a few hundred bytes at most. */
const MAX_RESERVATION_BYTES = 512;
/** Reservations followed at most (a /16 of pods). */
export const MAX_RESERVATIONS = 65_536;

interface Reservation {
  mtimeMs: number;
  owner: string;
  address: string;
}

/** Directories watched through inotify at most; past it, the every-second scan alone. */
export const MAX_WATCHED = 64;

/** How long a sandbox's bundle is looked for after its reservation (a sandbox no CRI made has none). */
const POD_LOOKUP_MS = 30_000;

/** The host-local reservations, as claims in PeerAddresses. */
export class CniReservations {
  #root: string;
  #tasks: string;
  #peers: PeerAddresses;
  /** By path: what the file said when it was last read. */
  #known = new Map<string, Reservation>();
  /** A sandbox's PeerName, made once per id (its pod can be read late: the bundle may not be written yet). */
  #names = new Map<string, { peer: PeerName; lookUntil: number }>();
  #refused = new Set<string>();
  #log: (line: string) => void;
  /** inotify watches, by directory: a change there rescans at once. */
  #watches = new Map<string, Deno.FsWatcher>();
  #watching = false;
  #soon: ReturnType<typeof setTimeout> | undefined;

  constructor(peers: PeerAddresses, log: (line: string) => void, root = CNI_NETWORKS, tasks = CONTAINERD_TASKS) {
    this.#peers = peers;
    this.#log = log;
    this.#root = root;
    this.#tasks = tasks;
  }

  /** Reservations known. */
  get size(): number {
    return this.#known.size;
  }

  /** A directory must be root's and only root's to write, or what it says is not the plugin's. */
  #trusted(dir: string): boolean {
    let why: string | undefined;
    try {
      why = untrustedDirBecause(dir, [0]);
    } catch {
      return false; // gone, or never there
    }
    if (why && !this.#refused.has(dir)) {
      this.#refused.add(dir);
      this.#log(`lightmon: cni: not reading ${dir}: ${why}`);
    }
    return why === undefined;
  }

  /** Rescan whenever the reservations' directories change, from now until close(). */
  watch(): void {
    this.#watching = true;
    this.scan(Date.now());
  }

  /** Stop watching. */
  close(): void {
    this.#watching = false;
    clearTimeout(this.#soon);
    for (const w of this.#watches.values()) w.close();
    this.#watches.clear();
  }

  /** Read what changed since the last scan; `nowMs` ends the claims of reservations gone. */
  scan(nowMs: number): void {
    const seen = new Set<string>();
    const dirs = new Set<string>();
    if (this.#trusted(this.#root)) {
      dirs.add(this.#root);
      for (const net of this.#list(this.#root)) {
        const dir = `${this.#root}/${net}`;
        if (!this.#trusted(dir)) continue;
        dirs.add(dir);
        for (const name of this.#list(dir)) {
          if (seen.size >= MAX_RESERVATIONS) break;
          const address = canonicalAddress(name);
          if (address === "") continue; // lock, last_reserved_ip.N
          const path = `${dir}/${name}`;
          seen.add(path);
          this.#read(path, net, address, nowMs);
        }
      }
    }
    for (const [path, r] of this.#known) {
      if (seen.has(path)) continue;
      this.#peers.release(r.owner, nowMs, r.address);
      this.#known.delete(path);
    }
    if (!this.#watching) return;
    // A sandbox's bundle comes after its reservation and before its pod's containers: a new
    // bundle directory rescans, and the reservation waiting for its pod finds it.
    if (this.#known.size > 0 && this.#trusted(this.#tasks)) {
      for (const ns of this.#list(this.#tasks)) {
        const dir = `${this.#tasks}/${ns}`;
        if (this.#trusted(dir)) dirs.add(dir);
      }
    }
    this.#watchDirs(dirs);
  }

  /** Watch the directories a scan found trusted (checked just now, so not a link), and no others. */
  #watchDirs(dirs: Set<string>): void {
    for (const [dir, w] of this.#watches) {
      if (dirs.has(dir)) continue;
      w.close();
      this.#watches.delete(dir);
    }
    for (const dir of dirs) {
      if (this.#watches.has(dir) || this.#watches.size >= MAX_WATCHED) continue;
      let w: Deno.FsWatcher;
      try {
        w = Deno.watchFs(dir, { recursive: false });
      } catch {
        continue; // out of inotify watches: the every-second scan still sees it
      }
      this.#watches.set(dir, w);
      this.#follow(dir, w);
    }
  }

  async #follow(dir: string, w: Deno.FsWatcher): Promise<void> {
    try {
      for await (const e of w) {
        if (e.kind === "access") continue; // a read; a write says create or modify first
        // A reservation is written, then renamed or synced: one scan for the burst.
        this.#soon ??= setTimeout(() => {
          this.#soon = undefined;
          if (this.#watching) this.scan(Date.now());
        }, 5);
      }
    } catch {
      // The directory went away; the next scan drops it.
    }
    if (this.#watches.get(dir) === w) this.#watches.delete(dir);
  }

  #list(dir: string): string[] {
    try {
      return [...Deno.readDirSync(dir)].map((d) => d.name);
    } catch {
      return [];
    }
  }

  /** A reservation file: claimed anew when it is new or was rewritten (another sandbox took the address). */
  #read(path: string, net: string, address: string, nowMs: number): void {
    let mtimeMs: number;
    try {
      const st = Deno.lstatSync(path);
      if (!st.isFile) return;
      mtimeMs = st.mtime?.getTime() ?? 0;
    } catch {
      return;
    }
    const known = this.#known.get(path);
    if (known && known.mtimeMs === mtimeMs) {
      this.#named(known.owner, nowMs); // a pod whose bundle came after its reservation
      return;
    }
    const text = readRootFile(path, MAX_RESERVATION_BYTES);
    const id = text?.split(/\r?\n/)[0].trim() ?? "";
    if (!/^[\w.-]{1,128}$/.test(id)) return;
    if (known) this.#peers.release(known.owner, mtimeMs, address);
    // One owner per sandbox and network: its v4 and v6 reservations are its.
    const owner = `cni/${net}/${id}`;
    this.#known.set(path, { mtimeMs, owner, address });
    this.#peers.claim(address, owner, this.#named(owner, nowMs), mtimeMs);
  }

  /**
   * The sandbox's PeerName, made once; its pod filled in when containerd's bundle
   * names it (looked for a while: the bundle can come after the reservation).
   */
  #named(owner: string, nowMs: number): PeerName {
    const id = owner.slice(owner.lastIndexOf("/") + 1);
    let n = this.#names.get(id);
    if (!n) {
      if (this.#names.size >= MAX_RESERVATIONS) this.#names.delete(this.#names.keys().next().value!);
      const peer = { container: "", containerId: id, image: "", pod: "", namespace: "" };
      this.#names.set(id, n = { peer, lookUntil: nowMs + POD_LOOKUP_MS });
    }
    if (n.peer.pod === "" && nowMs <= n.lookUntil) {
      const pod = sandboxPod(this.#tasks, id);
      if (pod) Object.assign(n.peer, pod);
    }
    return n.peer;
  }
}
