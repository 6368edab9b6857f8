/**
 * CLOCK_BOOTTIME (the kernel's event clock) to wall-clock time. The offset is
 * re-measured on refresh(), so a wall-clock step (NTP) is followed within one
 * refresh interval.
 * @module
 */
import { CLOCK_BOOTTIME, CLOCK_REALTIME, clockNs } from "../../ffi/libc.ts";

/** Converts boot-clock nanoseconds to wall-clock nanoseconds. */
export class BootClock {
  #offset = 0n;

  constructor() {
    this.refresh();
  }

  /** Re-measure the offset between the two clocks. */
  refresh(): void {
    const a = clockNs(CLOCK_BOOTTIME);
    const wall = clockNs(CLOCK_REALTIME);
    const b = clockNs(CLOCK_BOOTTIME);
    this.#offset = wall - (a + b) / 2n;
  }

  /** Wall-clock ns since the epoch for a CLOCK_BOOTTIME timestamp. */
  wallNs(bootNs: bigint): bigint {
    return bootNs + this.#offset;
  }

  /** The current CLOCK_BOOTTIME in ns. */
  nowBootNs(): bigint {
    return clockNs(CLOCK_BOOTTIME);
  }
}
