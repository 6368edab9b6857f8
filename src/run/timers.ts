/**
 * Timers for any duration: setTimeout and setInterval fire at once for a delay of
 * 2^31 ms (24.8 days) or more, so longer ones are chained in steps.
 * @module
 */

/** The longest delay setTimeout takes as written. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Call `f` once after `ms`; returns a function that cancels it. */
export function after(ms: number, f: () => void, setTimer = setTimeout): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let left = ms;
  const arm = () => {
    const step = Math.min(left, MAX_TIMER_MS);
    left -= step;
    timer = setTimer(() => (left > 0 ? arm() : f()), step);
  };
  arm();
  return () => clearTimeout(timer);
}

/** Call `f` every `ms`; returns a function that stops it. */
export function every(ms: number, f: () => void, setTimer = setTimeout): () => void {
  let cancel = () => {};
  let stopped = false;
  const next = () => {
    cancel = after(ms, () => {
      if (stopped) return;
      next();
      f();
    }, setTimer);
  };
  next();
  return () => {
    stopped = true;
    cancel();
  };
}
