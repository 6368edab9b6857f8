/**
 * A BPF ring buffer (BPF_MAP_TYPE_RINGBUF) read directly through its memory map,
 * the way libbpf's ringbuf.c does it: the positions, and a view of the data.
 *
 * Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (read-write),
 * page 1 the producer position (read-only), then the data area, which the kernel
 * offers twice in a row so that a record that wraps around is contiguous (we map
 * it once: see RingView). Each record starts with an 8-byte header: u32 length
 * with BUSY (bit 31) and DISCARD (bit 30) flags, u32 page offset. Records are
 * 8-byte aligned.
 * @module
 */
import { BpfError } from "./errno.ts";
import { errno, libc } from "./libc.ts";

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const BUSY = 0x80000000;
const DISCARD = 0x40000000;
const HDR = 8;
const MAP_FAILED = 0xffffffffffffffffn;

function map(fd: number, length: number, prot: number, offset: number): Deno.PointerObject {
  const p = libc().mmap(null, BigInt(length), prot, MAP_SHARED, fd, BigInt(offset));
  if (!p || Deno.UnsafePointer.value(p) === MAP_FAILED) {
    throw new BpfError("mmap ring buffer", errno());
  }
  return p;
}

/**
 * The positions of a ring buffer, without its data: the consumer page (read-write)
 * and the producer page (read-only). Owns its two page mappings.
 */
export class RingPositions implements Disposable {
  #page: number;
  #consPtr: Deno.PointerValue;
  #prodPtr: Deno.PointerValue;
  #cons: BigUint64Array;
  #prod: BigUint64Array;

  /**
   * @param fd the ring buffer map's fd
   * @param pageSize the system page size
   */
  constructor(fd: number, pageSize: number) {
    this.#page = pageSize;
    this.#consPtr = map(fd, pageSize, PROT_READ | PROT_WRITE, 0);
    try {
      this.#prodPtr = map(fd, pageSize, PROT_READ, pageSize);
    } catch (e) {
      libc().munmap(this.#consPtr, BigInt(pageSize));
      throw e;
    }
    this.#cons = new BigUint64Array(Deno.UnsafePointerView.getArrayBuffer(this.#consPtr!, pageSize), 0, 1);
    this.#prod = new BigUint64Array(Deno.UnsafePointerView.getArrayBuffer(this.#prodPtr!, pageSize), 0, 1);
  }

  /** The consumer position (bytes consumed since the ring was created). */
  get consumed(): number {
    return Number(Atomics.load(this.#cons, 0));
  }

  /** The producer position: records up to here are reserved (maybe not yet committed). */
  get produced(): number {
    return Number(Atomics.load(this.#prod, 0));
  }

  /** Give the space up to `pos` back to the kernel (records there have been read). */
  release(pos: number): void {
    Atomics.store(this.#cons, 0, BigInt(pos));
  }

  /** Unmap the pages (not the map fd). Idempotent. */
  close(): void {
    if (this.#prodPtr) libc().munmap(this.#prodPtr, BigInt(this.#page));
    if (this.#consPtr) libc().munmap(this.#consPtr, BigInt(this.#page));
    this.#prodPtr = null;
    this.#consPtr = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A read-only view of a ring buffer's data area: records are read in place. The
 * kernel would map the data area twice in a row, so that a record that wraps
 * around is contiguous, but every mapped page counts in RSS (the kernel maps them
 * all at mmap): one copy is mapped, and the rare record that wraps is copied out.
 */
export class RingView implements Disposable {
  #ptr: Deno.PointerValue;
  #len: number;
  #size: number;
  #page: number;
  #hdr: Uint32Array;
  readonly buffer: ArrayBuffer;

  /** A record that wraps around the end of the data area, made contiguous. */
  #wrapped = new Uint8Array(0);

  constructor(fd: number, size: number, pageSize: number) {
    this.#len = pageSize + size;
    this.#ptr = map(fd, this.#len, PROT_READ, pageSize);
    this.#size = size;
    this.#page = pageSize;
    this.buffer = Deno.UnsafePointerView.getArrayBuffer(this.#ptr!, this.#len);
    this.#hdr = new Uint32Array(this.buffer, pageSize, size / 4);
  }

  /**
   * Call `onRecord(buffer, offset, length)` for every committed record from
   * position `start` up to at most `end` (the producer position read before),
   * skipping discarded ones, and return the position reached: a record the kernel
   * has reserved but not yet committed stops the walk there. The bytes are valid
   * only until the range is released.
   */
  read(start: number, end: number, onRecord: (buffer: ArrayBuffer, offset: number, length: number) => void): number {
    const mask = this.#size - 1;
    let pos = start;
    while (pos < end) {
      const off = pos & mask;
      const len = Atomics.load(this.#hdr, off >>> 2);
      if (len & BUSY) break; // reserved, not committed yet
      const size = len & ~(BUSY | DISCARD);
      if (!(len & DISCARD)) {
        // Headers are 8-byte aligned and never wrap; a record's data may.
        if (off + HDR + size <= this.#size) onRecord(this.buffer, this.#page + off + HDR, size);
        else onRecord(this.#unwrap(off + HDR, size), 0, size);
      }
      pos += (size + HDR + 7) & ~7;
    }
    return pos;
  }

  /** The `size` bytes from data offset `from` (maybe past the end: they continue at the start), copied. */
  #unwrap(from: number, size: number): ArrayBuffer {
    if (this.#wrapped.length < size) this.#wrapped = new Uint8Array(size);
    const data = new Uint8Array(this.buffer, this.#page, this.#size);
    const start = from & (this.#size - 1);
    const head = Math.min(size, this.#size - start);
    this.#wrapped.set(data.subarray(start, start + head));
    this.#wrapped.set(data.subarray(0, size - head), head);
    return this.#wrapped.buffer;
  }

  close(): void {
    if (this.#ptr) libc().munmap(this.#ptr, BigInt(this.#len));
    this.#ptr = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
