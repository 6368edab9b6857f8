/**
 * CLOCK_BOOTTIME (the kernel's event clock) to wall-clock time. The offset is
 * re-measured on refresh(), so a wall-clock step (NTP) is followed within one
 * refresh interval. The clocks are handed in: enrichment never touches ffi/.
 * @module
 */

/** Reads one clock in ns. */
export type ClockReader = () => bigint;

/** Converts boot-clock nanoseconds to wall-clock nanoseconds. */
export class BootClock {
  #offset = 0n;
  #boot: ClockReader;
  #real: ClockReader;

  /** @param boot reads CLOCK_BOOTTIME; @param real reads CLOCK_REALTIME */
  constructor(boot: ClockReader, real: ClockReader) {
    this.#boot = boot;
    this.#real = real;
    this.refresh();
  }

  /** Re-measure the offset between the two clocks. */
  refresh(): void {
    const a = this.#boot();
    const wall = this.#real();
    const b = this.#boot();
    this.#offset = wall - (a + b) / 2n;
  }

  /** Wall-clock ns since the epoch for a CLOCK_BOOTTIME timestamp. */
  wallNs(bootNs: bigint): bigint {
    return bootNs + this.#offset;
  }
}
