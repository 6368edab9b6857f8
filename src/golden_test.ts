/**
 * Golden test: a recorded stream of ring records (src/testdata/records.ts) through
 * decode, process tracking, enrichment and every renderer must print exactly the
 * bytes in src/testdata/golden/. `GOLDEN_WRITE=1 deno test -A src/golden_test.ts`
 * rewrites them, for a change to the output that is meant.
 */
import assert from "node:assert/strict";
import { decodeRecord } from "./capture/decode.ts";
import { enrich } from "./enrich/enricher.ts";
import { ProcessCache } from "./enrich/process_cache.ts";
import { UserNames } from "./enrich/users.ts";
import type { ConnEvent } from "./event.ts";
import { toJson } from "./output/json.ts";
import { logLine } from "./output/logfile.ts";
import { SummaryRenderer } from "./output/summary.ts";
import { TableRenderer } from "./output/table.ts";
import { LineWriter } from "./output/writer.ts";
import { GOLDEN_CONTAINERS, GOLDEN_PASSWD, GOLDEN_WALL_OFFSET, goldenRecords } from "./testdata/records.ts";

Deno.env.set("TZ", "UTC");
const DIR = new URL("./testdata/golden/", import.meta.url);

async function events(): Promise<ConnEvent[]> {
  const passwd = await Deno.makeTempFile();
  await Deno.writeTextFile(passwd, GOLDEN_PASSWD);
  const none = () => undefined;
  const processes = new ProcessCache({ proc: { startNs: none, exe: none, cwd: () => "/srv", args: none } });
  const deps = {
    wallNs: (b: bigint) => b + GOLDEN_WALL_OFFSET,
    users: new UserNames(passwd),
    processes,
    containers: { get: (id: string) => GOLDEN_CONTAINERS[id] },
  };
  const out: ConnEvent[] = [];
  for (const v of goldenRecords()) {
    const r = decodeRecord(v);
    if (!r) continue;
    if (r.kind === "exec") processes.exec(r);
    else if (r.kind === "exit") processes.exit(r.pid, r.procStartNs);
    else if (r.kind === "fork") processes.fork(r.pid, r.procStartNs, r.ppid, r.parentStartNs);
    else out.push(enrich(r, deps));
  }
  await Deno.remove(passwd);
  return out;
}

function collect(f: (w: LineWriter) => void): string {
  const chunks: Uint8Array[] = [];
  const w = new LineWriter({ writeSync: (p) => (chunks.push(p.slice()), p.length) });
  f(w);
  w.flush();
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

async function outputs(): Promise<Record<string, string>> {
  const evs = await events();
  const table = (width: number) =>
    collect((w) => {
      const t = new TableRenderer(width);
      for (const e of evs) for (const l of t.render(e)) w.line(l);
      for (const l of t.footer()) w.line(l);
    });
  const summary = (format: "table" | "json") =>
    collect((w) => {
      const s = new SummaryRenderer(w, format);
      for (const e of evs) s.event(e);
      s.close();
    });
  return {
    "events.jsonl": collect((w) => evs.forEach((e) => w.line(toJson(e)))),
    "table-80.txt": table(80),
    "table-160.txt": table(160),
    "log.jsonl": collect((w) => evs.forEach((e) => w.line(logLine(e)))),
    "summary.txt": summary("table"),
    "summary.jsonl": summary("json"),
  };
}

Deno.test("every output of the recorded stream is byte for byte the golden one", async () => {
  const got = await outputs();
  for (const [name, text] of Object.entries(got)) {
    const path = new URL(name, DIR);
    if (Deno.env.get("GOLDEN_WRITE") === "1") await Deno.writeTextFile(path, text);
    assert.equal(text, await Deno.readTextFile(path), name);
  }
});
