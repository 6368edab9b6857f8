/**
 * Cgroup names by the key a connection record carries. The kernel reads a cgroup's
 * names (and whether root made it) once, at its first connection, into lm_cgroups,
 * and each record names its task's cgroup by key: 12 bytes, not 192. This cache
 * reads a key's names from that table the first time it is seen; a burst from one
 * cgroup costs one comparison per record.
 * @module
 */
import { CGROUP_NAMES, CGROUP_NAMES_SIZE } from "./layout.ts";

/** A cgroup's leaf and parent names: the leaf carries a container's id, the parent a pod's uid. */
export interface CgroupNames {
  readonly cgroup: string;
  readonly cgroupParent: string;
}

/** No names: the host's root, or a cgroup root did not make (the kernel gives no key for one). */
export const NO_NAMES: CgroupNames = Object.freeze({ cgroup: "", cgroupParent: "" });

/** Reads a key's value (lm_cgroup_names) from the kernel's table into `value`; false when it is not there. */
export type ReadCgroup = (key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>) => boolean;

/** Keys remembered at most (the kernel's table holds 16,384); full, the cache starts over. */
export const MAX_CGROUPS = 32_768;

const utf8 = new TextDecoder();

function cString(bytes: Uint8Array, offset: number, size: number): string {
  const field = bytes.subarray(offset, offset + size);
  const end = field.indexOf(0);
  return utf8.decode(end < 0 ? field : field.subarray(0, end));
}

/** The names of the cgroups records name, read from the kernel once per key. */
export class CgroupCache {
  #read: ReadCgroup;
  #max: number;
  #names = new Map<number, CgroupNames>();
  #key = new Uint8Array(16);
  #keyView = new DataView(this.#key.buffer);
  #value = new Uint8Array(CGROUP_NAMES_SIZE);
  #lastLo = 0;
  #lastHi = 0;
  #lastHierarchy = -1;
  #last: CgroupNames = NO_NAMES;
  /** Keys the kernel's table no longer had when first seen here: their records went without names. */
  unknown = 0;
  /** Keys read from the kernel's table. */
  reads = 0;

  constructor(read: ReadCgroup, max = MAX_CGROUPS) {
    this.#read = read;
    this.#max = max;
  }

  /** The names for the key at `idOffset` (u64 kernfs id) and `hierarchyOffset` (u32) of a record. */
  get(v: DataView, idOffset: number, hierarchyOffset: number): CgroupNames {
    const lo = v.getUint32(idOffset, true);
    const hi = v.getUint32(idOffset + 4, true);
    if (lo === 0 && hi === 0) return NO_NAMES;
    const hierarchy = v.getUint32(hierarchyOffset, true);
    if (lo === this.#lastLo && hi === this.#lastHi && hierarchy === this.#lastHierarchy) return this.#last;
    // One number per key while it is exact (ids below 2^48, hierarchies below 32: every real one).
    const exact = hi < 0x10000 && hierarchy < 32;
    const key = (hi * 0x1_0000_0000 + lo) * 32 + hierarchy;
    let names = exact ? this.#names.get(key) : undefined;
    if (!names) {
      names = this.#fetch(lo, hi, hierarchy);
      // A key the table did not have is asked again next time: it may be back (LRU).
      if (exact && names !== NO_NAMES) {
        if (this.#names.size >= this.#max) this.#names.clear();
        this.#names.set(key, names);
      }
    }
    this.#lastLo = lo;
    this.#lastHi = hi;
    this.#lastHierarchy = hierarchy;
    this.#last = names;
    return names;
  }

  #fetch(lo: number, hi: number, hierarchy: number): CgroupNames {
    const k = this.#keyView;
    k.setUint32(0, lo, true);
    k.setUint32(4, hi, true);
    k.setUint32(8, hierarchy, true);
    k.setUint32(12, 0, true);
    this.reads++;
    if (!this.#read(this.#key, this.#value)) {
      this.unknown++;
      return NO_NAMES;
    }
    const b = this.#value;
    return {
      cgroup: cString(b, CGROUP_NAMES.cgroup.offset, CGROUP_NAMES.cgroup.size),
      cgroupParent: cString(b, CGROUP_NAMES.cgroup_parent.offset, CGROUP_NAMES.cgroup_parent.size),
    };
  }
}

/** A cache with nothing to read from: every key is unknown (records decoded without a capture). */
export const noCgroups = (): CgroupCache => new CgroupCache(() => false);
