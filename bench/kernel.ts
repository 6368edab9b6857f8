/**
 * The kernel side's cost per connection: the connect storm under lightmon with
 * `kernel.bpf_stats_enabled=1`, and each of lightmon's programs' run time and run
 * count over the storm (`bpftool prog show`), divided by the storm's connections.
 * This is CPU the storm's own threads and softirqs spend in lightmon's programs; the
 * tracer's own CPU (bench/peers.ts) does not include it.
 *
 * Rows: connects only (`--include dport=P`), `--events close --include rport=P` and
 * `--events all`, one client, 3-second storms, BENCH_ROUNDS interleaved rounds (3),
 * medians and ranges. `BENCH_LIGHTMON_B=<path>` adds a second build to the same
 * rounds (an A/B). bpf_stats_enabled is put back as it was.
 * @module
 */
import { LIGHTMON, Lightmon, range, startListener, timedStorm } from "./lib.ts";

const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const STORM_SECONDS = 3;
const STATS = "/proc/sys/kernel/bpf_stats_enabled";
const dec = new TextDecoder();

interface Prog {
  id: number;
  name: string;
  run_cnt?: number;
  run_time_ns?: number;
}

function progs(): Map<number, Prog> {
  const out = new Deno.Command("bpftool", { args: ["prog", "show", "-j"], stdout: "piped" }).outputSync();
  return new Map((JSON.parse(dec.decode(out.stdout)) as Prog[]).map((p) => [p.id, p]));
}

const MODES = {
  "connects": (p: number) => ["--include", `dport=${p}`],
  "--events close": (p: number) => ["--events", "close", "--include", `rport=${p}`],
  "--events all": (p: number) => ["--events", "all", "--include", `dport=${p} || lport=${p}`],
} as const;

/** One storm under one build: per program, ns per call and calls per connection; and the total per connection. */
async function measure(
  path: string,
  args: string[],
  port: number,
): Promise<{ perProgram: Map<string, { nsPerCall: number; callsPerConn: number }>; nsPerConn: number }> {
  const before = progs();
  const lm = new Lightmon(["--output", "json", ...args], path);
  await lm.ready();
  await new Promise((r) => setTimeout(r, 300));
  const ours = [...progs().values()].filter((p) => !before.has(p.id) && p.name.startsWith("lm_"));
  const start = new Map(ours.map((p) => [p.id, p]));
  const { n } = await timedStorm(port, 1, STORM_SECONDS);
  await new Promise((r) => setTimeout(r, 300)); // the last closes
  const end = progs();
  await lm.stop();
  const perProgram = new Map<string, { nsPerCall: number; callsPerConn: number }>();
  let total = 0;
  for (const [id, p0] of start) {
    const p1 = end.get(id);
    const calls = (p1?.run_cnt ?? 0) - (p0.run_cnt ?? 0);
    const ns = (p1?.run_time_ns ?? 0) - (p0.run_time_ns ?? 0);
    if (calls <= 0) continue;
    total += ns;
    perProgram.set(p0.name, { nsPerCall: ns / calls, callsPerConn: calls / n });
  }
  return { perProgram, nsPerConn: total / n };
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench: run as root (lightmon loads BPF programs; bpf_stats_enabled is a sysctl)");
    Deno.exit(2);
  }
  const builds = [["lightmon", Deno.env.get("BENCH_LIGHTMON") ?? LIGHTMON]];
  const b = Deno.env.get("BENCH_LIGHTMON_B");
  if (b) builds.push([`lightmon B (${b})`, b]);
  const was = Deno.readTextFileSync(STATS).trim();
  Deno.writeTextFileSync(STATS, "1");
  const listener = await startListener();
  // Per build and mode: the state-change program's ns per call, the accept program's, and the total per connection.
  const rows = new Map<string, { state: number[]; accept: number[]; total: number[] }>();
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [mode, args] of Object.entries(MODES)) {
        for (const [name, path] of builds) {
          const m = await measure(path, args(listener.port), listener.port);
          const key = `${name} | ${mode}`;
          if (!rows.has(key)) rows.set(key, { state: [], accept: [], total: [] });
          const r = rows.get(key)!;
          const state = [...m.perProgram].find(([p]) => p.endsWith("_state"))?.[1].nsPerCall ?? NaN;
          const accept = [...m.perProgram].find(([p]) => p.startsWith("lm_tp_accept"))?.[1].nsPerCall ?? NaN;
          r.state.push(state);
          r.accept.push(accept);
          r.total.push(m.nsPerConn);
          console.error(
            `bench: round ${round}, ${key}: state ${state.toFixed(0)} ns a call, accept ${
              Number.isNaN(accept) ? "-" : `${accept.toFixed(0)} ns`
            }, kernel ${m.nsPerConn.toFixed(0)} ns a connection (${
              [...m.perProgram].map(([p, s]) => `${p} ${s.callsPerConn.toFixed(2)}x${s.nsPerCall.toFixed(0)}`).join(
                ", ",
              )
            })`,
          );
        }
      }
    }
  } finally {
    Deno.writeTextFileSync(STATS, was);
    listener.child.kill("SIGTERM");
    await listener.child.status;
  }
  console.log(
    `\nthe kernel side per connection: ${STORM_SECONDS}-second loopback storms, 1 client, ${ROUNDS} interleaved rounds, median (range), ns\n`,
  );
  console.log("| build | mode | state-change program, a call | accept program, a call | all programs, a connection |");
  console.log("|---|---|---|---|---|");
  for (const [key, r] of rows) {
    const accept = r.accept.every(Number.isNaN) ? "-" : range(r.accept, 0);
    console.log(`| ${key} | ${range(r.state, 0)} | ${accept} | ${range(r.total, 0)} |`);
  }
}
