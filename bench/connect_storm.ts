/**
 * `make bench`: a bounded loopback connect storm with and without lightmon, in
 * the same run, reporting completeness, throughput ratio, lightmon's user-space
 * CPU per event, start-to-first-event, peak RSS and attribution accuracy.
 *
 * Every load is bounded in count and time and goes to a loopback listener this
 * script starts. Numbers are only comparable within one run: the machine is
 * shared and noisy, so each ratio is traced/untraced measured back to back.
 * @module
 */
import { CONNECTOR, cpuSeconds, LIGHTMON, Lightmon, peakRssMb, startListener } from "./lib.ts";

import { dockerUnavailable, ensureImage } from "../tests/docker.ts";

const PER_CLIENT_1 = Number(Deno.env.get("BENCH_CONNECTS_1") ?? 60_000);
const PER_CLIENT_4 = Number(Deno.env.get("BENCH_CONNECTS_4") ?? 25_000);
const EXECS = Number(Deno.env.get("BENCH_EXECS") ?? 2000);
const MAX_SECONDS = 30;

const dec = new TextDecoder();

/** Run `clients` connectors in parallel; returns total attempts and wall seconds. */
async function storm(port: number, clients: number, perClient: number): Promise<{ n: number; seconds: number }> {
  const t0 = performance.now();
  const runs = await Promise.all(
    Array.from({ length: clients }, () =>
      new Deno.Command(CONNECTOR, {
        args: ["-q", "-r", "-n", String(perClient), "-T", String(MAX_SECONDS), "127.0.0.1", String(port)],
      }).output()),
  );
  const seconds = (performance.now() - t0) / 1000;
  const n = runs.reduce((a, r) => a + JSON.parse(dec.decode(r.stdout)).established, 0);
  return { n, seconds };
}

/** One connector process per connection, fork+exec'd by a shell loop. */
async function execStorm(port: number, count: number): Promise<{ n: number; seconds: number }> {
  const t0 = performance.now();
  const script = `i=0; while [ $i -lt ${count} ]; do "${CONNECTOR}" -q 127.0.0.1 ${port} >/dev/null; i=$((i+1)); done`;
  await new Deno.Command("timeout", { args: [String(MAX_SECONDS * 2), "sh", "-c", script] }).output();
  return { n: count, seconds: (performance.now() - t0) / 1000 };
}

/** lightmon writing JSON events for `port` to a temporary file. */
class Traced extends Lightmon {
  out: string;

  constructor(port: number) {
    const out = Deno.makeTempFileSync({ prefix: "lightmon-bench-", suffix: ".json" });
    super(["-c", `exec "${LIGHTMON}" --output json --include 'dport=${port}' >"${out}"`], "sh");
    this.out = out;
  }

  override ready(): Promise<void> {
    return super.ready(15_000, 10);
  }

  /** Lines written so far that are events for our port. */
  events(): Record<string, unknown>[] {
    return Deno.readTextFileSync(this.out).split("\n").filter((l) => l).map((l) => JSON.parse(l));
  }

  async finish(): Promise<{ lost: number }> {
    await this.stop();
    Deno.removeSync(this.out);
    // The exit line: `... dropped D (ring-full N, ...)`; only a full ring loses storm events.
    if (!/ dropped \d+/.test(this.stderr)) return { lost: NaN };
    const m = /ring-full (\d+)/.exec(this.stderr);
    return { lost: m ? Number(m[1]) : 0 };
  }
}

/** Connections the flow records written so far stand for (the ring was busy: they were counted in the kernel). */
function asFlows(text: string): number {
  return text.split("\n").filter((l) => l.includes('"event":"flow"'))
    .reduce((n, l) => n + Number(/"connections":(\d+)/.exec(l)?.[1] ?? 0), 0);
}

/** Final-status events written so far (a "pending" record precedes its final one), and what flow records stand for. */
function finals(t: Traced): number {
  const text = Deno.readTextFileSync(t.out);
  const flowLines = text.match(/"event":"flow"/g)?.length ?? 0;
  return text.split("\n").length - 1 - (text.match(/"status":"pending"/g)?.length ?? 0) - flowLines + asFlows(text);
}

/** Wait until lightmon has written `n` final events (or stopped making progress for longer than a flow read takes). */
async function settle(t: Traced, n: number): Promise<number> {
  let last = -1;
  let still = 0;
  for (let i = 0; i < 150; i++) {
    const got = finals(t);
    if (got >= n) return got;
    still = got === last ? still + 1 : 0;
    if (still >= 12) return got;
    last = got;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}

interface Row {
  scenario: string;
  connects: number;
  captured: number;
  lost: number;
  ratio: number;
  cpuUsPerEvent: number;
  peakRssMb: number;
  extra?: string;
}

async function scenario(
  name: string,
  port: number,
  load: () => Promise<{ n: number; seconds: number }>,
  check?: (events: Record<string, unknown>[]) => string,
): Promise<Row> {
  const base1 = await load();
  const t = new Traced(port);
  await t.ready();
  const pid = t.child.pid;
  await new Promise((r) => setTimeout(r, 200)); // let start-up CPU settle
  const c0 = cpuSeconds(pid);
  const traced = await load();
  const captured = await settle(t, traced.n);
  const c1 = cpuSeconds(pid);
  const flowed = asFlows(Deno.readTextFileSync(t.out));
  const extra = [check?.(t.events()), flowed ? `${flowed} as flow records (the ring was busy)` : ""].filter(Boolean)
    .join("; ") || undefined;
  const rss = peakRssMb(pid);
  const { lost } = await t.finish();
  const base2 = await load();
  const baseRate = (base1.n / base1.seconds + base2.n / base2.seconds) / 2;
  return {
    scenario: name,
    connects: traced.n,
    captured,
    lost,
    ratio: (traced.n / traced.seconds) / baseRate,
    cpuUsPerEvent: (c1 - c0) * 1e6 / Math.max(1, captured),
    peakRssMb: rss,
    extra,
  };
}

const CONTAINERS = Number(Deno.env.get("BENCH_CONTAINERS") ?? 20);

/**
 * Attribution of short-lived containers: each `docker run --rm` connects once and
 * exits; right = the event names the container and its id.
 */
async function containerAccuracy(port: number): Promise<string> {
  const why = await dockerUnavailable();
  if (why) return `skipped (${why})`;
  await ensureImage();
  const t = new Traced(port);
  await t.ready();
  const runs: { name: string; id: string; sport: number }[] = [];
  for (let i = 0; i < CONTAINERS; i++) {
    const name = `lm-bench-${Deno.pid}-${i}`;
    const cid = `${Deno.makeTempDirSync()}/cid`;
    const out = await new Deno.Command("docker", {
      args: [
        "run",
        "--rm",
        "--network",
        "host",
        "--cidfile",
        cid,
        "--name",
        name,
        "lightmon-test:latest",
        "/bin/connector",
        "127.0.0.1",
        String(port),
      ],
    }).output();
    if (!out.success) continue;
    runs.push({ name, id: Deno.readTextFileSync(cid).trim(), sport: JSON.parse(dec.decode(out.stdout)).sport });
  }
  await settle(t, runs.length);
  const events = t.events();
  await t.finish();
  const right = runs.filter((r) =>
    events.some((e) => e.sport === r.sport && e.container === r.name && e.containerId === r.id)
  );
  return `${right.length}/${CONTAINERS} right`;
}

async function startup(port: number): Promise<{ firstEventMs: number; rssMb: number }> {
  const t0 = performance.now();
  const t = new Traced(port);
  let firstEventMs = NaN;
  const end = Date.now() + 15_000;
  while (Date.now() < end) {
    await new Deno.Command(CONNECTOR, { args: ["-q", "127.0.0.1", String(port)] }).output();
    if (Deno.readTextFileSync(t.out).length > 0) {
      firstEventMs = performance.now() - t0;
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const rssMb = peakRssMb(t.child.pid);
  await t.finish();
  return { firstEventMs, rssMb };
}

if (Deno.uid() !== 0) {
  console.error("bench: run as root (lightmon loads BPF programs)");
  Deno.exit(2);
}
const listener = await startListener();
const port = listener.port;
const rows: Row[] = [];
try {
  rows.push(await scenario("1 client", port, () => storm(port, 1, PER_CLIENT_1)));
  rows.push(await scenario("4 clients", port, () => storm(port, 4, PER_CLIENT_4)));
  rows.push(
    await scenario("fork+exec per connect", port, () => execStorm(port, EXECS), (events) => {
      const right = events.filter((e) =>
        e.exe === CONNECTOR && Array.isArray(e.args) && e.args.length === 4 && e.args[1] === "-q" &&
        e.procSource === "exec"
      ).length;
      return `attribution ${right}/${events.length} right`;
    }),
  );
  const containers = await containerAccuracy(port);
  const s = await startup(port);
  console.log("\nlightmon connect-storm benchmark (loopback, one run; ratios are traced/untraced back to back)\n");
  console.log(
    "| scenario | connects | captured | completeness | lost | throughput ratio | lightmon CPU µs/event | peak RSS MB | notes |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const r of rows) {
    console.log(
      `| ${r.scenario} | ${r.connects} | ${r.captured} | ${(100 * r.captured / r.connects).toFixed(2)}% | ${r.lost} | ${
        r.ratio.toFixed(3)
      } | ${r.cpuUsPerEvent.toFixed(2)} | ${r.peakRssMb.toFixed(1)} | ${r.extra ?? ""} |`,
    );
  }
  console.log(`\nstart to first event: ${s.firstEventMs.toFixed(0)} ms; RSS after start ${s.rssMb.toFixed(1)} MB`);
  console.log(`short-lived containers (docker run --rm, connect, exit): ${containers}`);
} finally {
  listener.child.kill("SIGTERM");
  await listener.child.status;
}
