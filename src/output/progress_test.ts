import assert from "node:assert/strict";
import { Progress, progressLine, timeLeft, wantsProgress } from "./progress.ts";

Deno.test("the progress line says events, flows, learned, novel, drops and time left", () => {
  assert.equal(
    progressLine({ events: 12345, flows: 120, novel: 3, dropped: 0, leftMs: 41_200 }),
    "lightmon: 12,345 events, 120 flows, 3 novel, 0 dropped, 42s left",
  );
  assert.equal(
    progressLine({ events: 0, learned: 7, dropped: 2, leftMs: 3_600_000 + 120_000 }),
    "lightmon: 0 events, 7 learned, 2 dropped, 1h02m left",
  );
  assert.equal(timeLeft(245_000), "4m05s");
  assert.equal(timeLeft(-5), "0s");
});

Deno.test("the progress line is drawn in place, cleared around other lines, and erased at the end", () => {
  const out: string[] = [];
  const p = new Progress((b) => out.push(new TextDecoder().decode(b)), () => 30);
  const logged: string[] = [];
  const log = p.around((l) => (logged.push(l), out.push(`<${l}>`)));
  log("before anything is shown");
  p.show("lightmon: 1 events, 0 dropped, 9s left");
  log("a note");
  p.show("lightmon: 2 events");
  p.end();
  p.show("lightmon: 3 events");
  log("the exit line");
  assert.deepEqual(out, [
    "<before anything is shown>",
    // Cut to the width less one: a line that wraps cannot be redrawn in place.
    "\r\x1b[Klightmon: 1 events, 0 droppe…",
    "\r\x1b[K",
    "<a note>",
    "lightmon: 1 events, 0 droppe…",
    "\r\x1b[Klightmon: 2 events",
    "\r\x1b[K",
    "<the exit line>",
  ]);
  assert.equal(logged.length, 3);
});

Deno.test("progress only for bounded runs on a terminal whose events are not drawn there meanwhile", () => {
  const o = { durationMs: 60_000, output: "summary", learn: "" };
  assert.equal(wantsProgress(o, true, true), true);
  assert.equal(wantsProgress(o, false, true), false);
  assert.equal(wantsProgress({ ...o, durationMs: 0 }, true, true), false);
  assert.equal(wantsProgress({ ...o, output: "json" }, true, false), false);
  const learning = { ...o, output: "json", learn: "b.yaml" };
  assert.equal(wantsProgress(learning, true, false), true);
  // JSON lines on the same terminal would be drawn over.
  assert.equal(wantsProgress(learning, true, true), false);
  assert.equal(wantsProgress({ ...learning, output: "log" }, true, true), true);
});

Deno.test("a terminal that fails a write ends the progress line, never the run", () => {
  let writes = 0;
  const p = new Progress(() => {
    writes++;
    throw new Error("EIO");
  }, () => 80);
  p.show("lightmon: 1 events");
  p.show("lightmon: 2 events");
  p.around(() => {})("a note");
  p.end();
  assert.equal(writes, 1);
});
