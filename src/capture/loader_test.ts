import assert from "node:assert/strict";
import { taskBtfAvailable } from "./loader.ts";

Deno.test("tasks are BTF-typed from Linux 5.11, whatever the release's suffix", () => {
  const cases: [string, boolean][] = [
    ["6.18.0-lightmon", true],
    ["6.1.0-28-amd64", true],
    ["5.11.0", true],
    ["5.15.0-91-generic", true],
    ["5.10.0-30-amd64", false],
    ["5.8.0", false],
    ["4.18.0-553.el8_10.x86_64", false],
    ["10.0.1", true],
    ["", false],
    ["garbage", false],
  ];
  for (const [release, want] of cases) assert.equal(taskBtfAvailable(release), want, release);
});
