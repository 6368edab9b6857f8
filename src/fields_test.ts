import assert from "node:assert/strict";
import { COLUMNS, FIELDS, FILTER_FIELDS } from "./fields.ts";
import { sampleEvent } from "./testdata/event.ts";

Deno.test("registry names are unique: JSON keys, filter names, columns, log keys, flow keys", () => {
  const unique = (what: string, names: (string | number)[]) =>
    assert.equal(new Set(names).size, names.length, `${what}: ${names.join(", ")}`);
  unique("JSON keys", FIELDS.filter((f) => f.json).map((f) => f.key));
  unique(
    "filter names",
    FIELDS.flatMap((f) =>
      (f.filter === undefined ? [] : "kind" in f.filter ? [f.filter] : f.filter).map((s) => s.name ?? f.key)
    ),
  );
  unique("column heads", COLUMNS.map((c) => c.head));
  unique("column positions", COLUMNS.map((c) => c.at));
  unique("log keys", FIELDS.flatMap((f) => (f.log ? [f.log.key] : [])).concat("level", "msg"));
  unique("flow positions", FIELDS.flatMap((f) => (f.flow ? [f.flow.at] : [])));
  assert.equal(COLUMNS.filter((c) => c.fill).length, 1, "one column takes the rest of the width");
});

Deno.test("every registry getter reads a value of its declared JSON type", () => {
  const e = sampleEvent();
  for (const f of FIELDS) {
    if (!f.json) continue;
    const parsed = JSON.parse(`{"v":${f.json.encode(f.get(e))}}`).v;
    const type = Array.isArray(parsed) ? "string[]" : typeof parsed;
    assert.equal(type, f.json.type, f.key);
  }
});

Deno.test("filter field lookups never reach Object.prototype", () => {
  for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
    assert.equal(FILTER_FIELDS.get(name), undefined, name);
  }
});
