/**
 * What a baseline costs: loading a file of 10,000 flows (in a fresh process, as
 * at start-up: the YAML module's import, the read, the parse and every rule's
 * compilation), and checking an event against it, for events whose flow is listed
 * (by name or by address) and events whose flow is new, with 10,000 learned flows
 * and 50 hand-written patterns (globs, CIDRs, ranges) beside them.
 *
 *   deno run -A bench/baseline.ts
 * @module
 */
import { sampleEvent } from "../src/testdata/event.ts";
import type { ConnEvent } from "../src/event.ts";
import { Baseline } from "../src/baseline/rules.ts";
import { BaselineStage } from "../src/baseline/stage.ts";
import { loadBaseline } from "../src/baseline/file.ts";
import { documentText, mergeFlows, newDocument } from "../src/baseline/merge.ts";
import { eventLine, workloadOf } from "../src/baseline/flow.ts";
import { median } from "./lib.ts";

const FLOWS = 10_000;
const WORKLOADS = 100;

/** The i-th flow's event: pods, images and host processes; names and addresses, v4 and v6, both directions. */
function flowEvent(i: number, novel = false): ConnEvent {
  const w = i % WORKLOADS;
  const kind = w % 3;
  const named = i % 2 === 0;
  const v6 = i % 7 === 0;
  const n = novel ? i + 1_000_000 : i;
  return sampleEvent({
    pod: kind === 0 ? `svc${w}-7f9c6d5b8-x2kq4` : "",
    namespace: kind === 0 ? "prod" : "",
    image: kind === 1 ? `registry.example.com/team/app${w}:1.${w}` : "",
    containerId: kind === 2 ? "" : w.toString(16).padStart(64, "c"),
    exe: `/usr/local/bin/app${w}`,
    direction: i % 11 === 0 ? "inbound" : "outbound",
    sport: 8000 + (n % 50),
    family: v6 ? 6 : 4,
    daddr: v6 ? `fd00::${(n % 65000).toString(16)}` : `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
    dport: 443 + (n % 3),
    dnsName: named ? `api${n}.svc${w}.example.com` : "",
  });
}

async function writeBaseline(path: string): Promise<void> {
  const flows = new Map<string, string[]>();
  for (let i = 0; i < FLOWS; i++) {
    const e = flowEvent(i);
    const w = workloadOf(e);
    const list = flows.get(w) ?? [];
    list.push(eventLine(e));
    flows.set(w, list);
  }
  // Fifty hand-written rules with patterns, under the host and under a glob of workloads.
  const patterns = Array.from(
    { length: 50 },
    (_, i) =>
      i % 3 === 0
        ? `* -> *.partner${i}.example.net:443`
        : i % 3 === 1
        ? `/opt/tool${i}/* -> 172.${16 + (i % 16)}.0.0/16:*`
        : `/usr/bin/agent${i} -> metrics${i}.example.org:9000-9100`,
  );
  flows.set("host", [...(flows.get("host") ?? []), ...patterns]);
  flows.set("pod monitoring/*", patterns);
  const doc = newDocument();
  mergeFlows(doc, flows);
  await Deno.writeTextFile(path, documentText(doc));
}

if (Deno.args[0] === "--load") {
  // A fresh process: time to a loaded baseline, module import included.
  const t0 = performance.now();
  const { Baseline: B } = await import("../src/baseline/rules.ts");
  const { loadBaseline: load } = await import("../src/baseline/file.ts");
  const file = await load(Deno.args[1], new B(), "--baseline", false);
  console.log(JSON.stringify({ ms: performance.now() - t0, flows: file?.flows }));
  Deno.exit(0);
}

const dir = await Deno.makeTempDir({ prefix: "lightmon-bench-baseline-" });
try {
  const path = `${dir}/baseline.yaml`;
  await writeBaseline(path);
  if (Deno.env.get("BENCH_KEEP")) await Deno.copyFile(path, Deno.env.get("BENCH_KEEP")!);
  const size = (await Deno.stat(path)).size;
  const loads: number[] = [];
  let flows = 0;
  for (let r = 0; r < 5; r++) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, "--load", path],
      stdout: "piped",
    }).output();
    const res = JSON.parse(new TextDecoder().decode(out.stdout));
    loads.push(res.ms);
    flows = res.flows;
  }
  console.log(
    `load: ${flows} flows (${(size / 1024).toFixed(0)} KiB) in ${
      median(loads).toFixed(0)
    } ms (median of 5 fresh processes; ${loads.map((x) => x.toFixed(0)).join(", ")})`,
  );

  const rules = new Baseline();
  await loadBaseline(path, rules, "--baseline", false);
  const listed = Array.from({ length: FLOWS }, (_, i) => flowEvent(i));
  // The same flows at a new address behind the same name: covered by name.
  const moved = listed.filter((e) => e.dnsName).map((e) => ({ ...e, daddr: "192.0.2.1" }));
  const novel = Array.from({ length: FLOWS }, (_, i) => flowEvent(i, true));
  const stage = new BaselineStage(rules);
  stage.connect(() => {}, { log: () => {}, stop: () => {}, flushSoon: () => {} });
  for (const [what, events] of [["listed", listed], ["listed, new address", moved], ["novel", novel]] as const) {
    const expect = what !== "novel";
    for (const e of events) {
      if (rules.covers(e) !== expect) throw new Error(`${what}: ${workloadOf(e)} ${eventLine(e)} judged wrong`);
    }
    const runs: number[] = [];
    const N = 1_000_000;
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let i = 0; i < N; i++) stage.push(events[i % events.length]);
      runs.push(((performance.now() - t0) * 1e6) / N);
    }
    console.log(`check, ${what}: ${median(runs).toFixed(0)} ns per event (median of 5 x ${N} events)`);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
