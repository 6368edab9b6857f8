import assert from "node:assert/strict";
import { after, every, MAX_TIMER_MS } from "./timers.ts";

/** A fake setTimeout that records delays and fires on demand. */
function fakeTimers() {
  const pending: { f: () => void; ms: number }[] = [];
  const set = ((f: () => void, ms: number) => {
    pending.push({ f, ms });
    return pending.length as unknown as ReturnType<typeof setTimeout>;
  }) as unknown as typeof setTimeout;
  const fire = () => pending.shift()!.f();
  return { pending, set, fire };
}

Deno.test("a 600-hour timer waits 600 hours, in steps setTimeout can take", () => {
  const t = fakeTimers();
  let fired = false;
  after(600 * 3_600_000, () => (fired = true), t.set);
  const steps: number[] = [];
  while (!fired) {
    assert.ok(t.pending[0].ms <= MAX_TIMER_MS);
    steps.push(t.pending[0].ms);
    t.fire();
  }
  assert.equal(steps.reduce((a, b) => a + b, 0), 600 * 3_600_000);
  assert.equal(steps.length, 2);
});

Deno.test("a long interval fires once per interval, not every millisecond", () => {
  const t = fakeTimers();
  let n = 0;
  every(600 * 3_600_000, () => n++, t.set);
  for (let i = 0; i < 6; i++) t.fire();
  assert.equal(n, 3);
});
