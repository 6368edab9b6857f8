/**
 * `make bench`, side by side: the same loopback connect storm untraced, under
 * lightmon, under bpftrace (a stash/emit script on sock:inet_sock_set_state) and
 * under libbpf-tools' tcplife, in interleaved rounds so that every traced storm
 * is compared with the untraced storms on either side of it. Each tracer is
 * started for two storms: the second is the steady state (a JIT has compiled the
 * hot code), the first pays the start. Prints one table of medians and ranges:
 * throughput ratio at 1 and 2 clients, the tracer's own CPU per event (its
 * process's user+system time, all threads, over the storm's connects), both of
 * the steady storm, the same of the first storm, and completeness over both (for
 * lightmon, records and what its flow records stand for, when the ring was
 * busy). Peers that are not installed are skipped with a note.
 *
 * Every storm is bounded in time (BENCH_STORM_SECONDS, 3) and goes to a loopback
 * listener this script starts.
 * @module
 */
import {
  cpuSeconds,
  LIGHTMON,
  machineBusySeconds,
  median,
  peakRssMb,
  range,
  startListener,
  timedStorm,
} from "./lib.ts";
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const STORM_SECONDS = Number(Deno.env.get("BENCH_STORM_SECONDS") ?? 3);
/** The client counts of each round (BENCH_CLIENTS=1 for a quick A/B). */
const CLIENTS = (Deno.env.get("BENCH_CLIENTS") ?? "1,2").split(",").map(Number);
const dec = new TextDecoder();

/** A tracer under test: how to start it, when it is ready, how many storm events it reported. */
interface Tracer {
  name: string;
  /** Why it cannot run here, or undefined. */
  missing(): string | undefined;
  start(port: number, out: string): Deno.ChildProcess;
  ready(stderr: string, stdout: string): boolean;
  /** Connection events for the storm in a run of whole lines of its output (counts add up over runs). */
  count(lines: string, port: number): number;
  /** Connection events it reported, when they are counted elsewhere than in its output (an OTLP sink). */
  counted?(): number;
  /** Events it reports per storm connection (1 unless it reports accepts and closes too). */
  perConnect?: number;
  /** How long after the storm its last events may take to come out (ms): a flow's interval. */
  lagMs?: number;
}

function which(cmd: string): string | undefined {
  for (const dir of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch { /* next */ }
  }
  return undefined;
}

/** Stash who connects at CLOSE->SYN_SENT, print at the outcome: what lightmon does, in bpftrace. */
const BPFTRACE_SCRIPT = (port: number) => `
tracepoint:sock:inet_sock_set_state /args->protocol == 6 && args->dport == ${port}/ {
  if (args->oldstate == 7 && args->newstate == 2) {
    @pid[args->skaddr] = pid; @comm[args->skaddr] = comm;
  }
  if (args->oldstate == 2 && (args->newstate == 1 || args->newstate == 7)) {
    printf("%d %s %d %d\\n", @pid[args->skaddr], @comm[args->skaddr], args->sport, args->newstate);
    delete(@pid[args->skaddr]); delete(@comm[args->skaddr]);
  }
}`;

/** What a lightmon row reports of each storm connection. */
type Mode = "connect" | "all" | "close" | "table" | "flows" | "otlp";

/** Fields of one protobuf message: (field number, bytes of a length-delimited one). */
function* delimitedFields(b: Uint8Array): Generator<[number, Uint8Array]> {
  let p = 0;
  const varint = () => {
    let n = 0;
    for (let mul = 1;; mul *= 128) {
      const c = b[p++];
      n += (c & 0x7f) * mul;
      if (c < 0x80) return n;
    }
  };
  while (p < b.length) {
    const tag = varint();
    const type = tag & 7;
    if (type === 0) varint();
    else if (type === 1) p += 8;
    else if (type === 5) p += 4;
    else if (type === 2) {
      const len = varint();
      yield [Math.floor(tag / 8), b.subarray(p, p + len)];
      p += len;
    } else return;
  }
}

/**
 * An OTLP/HTTP sink in this process, as a collector would take lightmon's records
 * (it runs on the same two cores): it counts the log records of each request
 * (ExportLogsServiceRequest.resource_logs = 1, ResourceLogs.scope_logs = 2,
 * ScopeLogs.log_records = 2) and answers 200.
 */
const otlpSink = (() => {
  const sink = { records: 0 };
  let server: Deno.HttpServer | undefined;
  return {
    get records() {
      return sink.records;
    },
    reset() {
      sink.records = 0;
    },
    url(): string {
      server ??= Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
        const body = new Uint8Array(await req.arrayBuffer());
        for (const [f, rl] of delimitedFields(body)) {
          if (f !== 1) continue;
          for (const [g, sl] of delimitedFields(rl)) {
            if (g !== 2) continue;
            for (const [h] of delimitedFields(sl)) if (h === 2) sink.records++;
          }
        }
        return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
      });
      return `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
    },
    async close() {
      await server?.shutdown();
    },
  };
})();

/**
 * lightmon from `path`, under `name`. `connect`: the client's connect. `all`: four
 * events per storm connection (the client's connect and close, the listener's
 * accept and close). `close`: the client's close record alone, what `tcplife -D`
 * reports (tcplife's job; every record of the connection still reaches lightmon).
 * `table`: connects as the table (160 columns, as when not on a terminal): one
 * row per event under a three-line header. `flows`: `--flows 1s`, the storm's
 * connections counted in the kernel, one record per client process a second.
 * `otlp`: connects as OTLP log records (protobuf) to a sink in this process.
 */
function lightmonTracer(name: string, path: string, mode: Mode = "connect"): Tracer {
  const select = {
    connect: `--include 'dport=${port0}'`,
    table: `--include 'dport=${port0}'`,
    all: `--events all --include 'dport=${port0} || lport=${port0}'`,
    close: `--events close --include 'rport=${port0}'`,
    flows: `--flows 1s --include 'dport=${port0}'`,
    otlp: `--include 'dport=${port0}'`,
  }[mode];
  const output = mode === "table" ? "table" : mode === "otlp" ? "otlp" : "json";
  return {
    name,
    // An older build (an A/B's A) may not have the flag.
    missing: () =>
      mode === "flows" && !helps(path, "-flows")
        ? `${path} has no --flows`
        : mode === "otlp" && !helps(path, "-otlp-endpoint")
        ? `${path} has no --output otlp`
        : undefined,
    perConnect: mode === "all" ? 4 : 1,
    // A flow comes out after its interval; an OTLP batch up to a second after its first record.
    lagMs: mode === "flows" || mode === "otlp" ? 1500 : 0,
    start: (port, out) => {
      const to = mode === "otlp" ? ` --otlp-endpoint ${otlpSink.url()}` : "";
      otlpSink.reset();
      return new Deno.Command("sh", {
        args: ["-c", `exec "${path}" --output ${output}${to} ${select.replaceAll(port0, String(port))} >"${out}"`],
        stderr: "piped",
      }).spawn();
    },
    ready: (err) => err.includes("lightmon: capture "),
    counted: mode === "otlp" ? () => otlpSink.records : undefined,
    count: mode === "otlp"
      ? () => 0
      : mode === "flows"
      ? (text) =>
        text.split("\n").filter((l) => l.includes('"event":"flow"'))
          .reduce((n, l) => n + Number(/"connections":(\d+)/.exec(l)?.[1] ?? 0), 0)
      : mode === "table"
      ? (text) =>
        text.split("\n").filter((l) => l.startsWith("│ ") && !l.startsWith("│ TIME") && !/│ pending/.test(l)).length
      // Records, and what flow records (the ring was busy) stand for: their connections and closes.
      : (text) => text.split("\n").length - 1 - (text.match(/"status":"pending"/g)?.length ?? 0) + flowEvents(text),
  };
}

/** Whether `path --help` mentions `flag`. */
function helps(path: string, flag: string): boolean {
  const out = new Deno.Command(path, { args: ["--help"], stdout: "piped", stderr: "null" }).outputSync();
  return dec.decode(out.stdout).includes(flag);
}

/** What the flow records in `text` stand for (beyond themselves): their connections and closes, one record each. */
function flowEvents(text: string): number {
  let n = 0;
  for (const l of text.split("\n")) {
    if (!l.includes('"event":"flow"')) continue;
    n += Number(/"connections":(\d+)/.exec(l)?.[1] ?? 0) + Number(/"closes":(\d+)/.exec(l)?.[1] ?? 0) - 1;
  }
  return n;
}

// BENCH_LIGHTMON=path measures another build; BENCH_LIGHTMON_B=path adds a second
// one to the same interleaved rounds, for an A/B comparison on a noisy machine.
const LIGHTMON_B = Deno.env.get("BENCH_LIGHTMON_B");

/** Stands for the storm's port in a command line until it is known. */
const port0 = "@PORT@";

const TRACERS: Tracer[] = [
  lightmonTracer("lightmon `--output json`", Deno.env.get("BENCH_LIGHTMON") ?? LIGHTMON),
  lightmonTracer("lightmon `--events close`", Deno.env.get("BENCH_LIGHTMON") ?? LIGHTMON, "close"),
  lightmonTracer("lightmon `--events all`", Deno.env.get("BENCH_LIGHTMON") ?? LIGHTMON, "all"),
  lightmonTracer("lightmon `--output table`", Deno.env.get("BENCH_LIGHTMON") ?? LIGHTMON, "table"),
  lightmonTracer("lightmon `--flows 1s`", Deno.env.get("BENCH_LIGHTMON") ?? LIGHTMON, "flows"),
  lightmonTracer("lightmon `--output otlp`", Deno.env.get("BENCH_LIGHTMON") ?? LIGHTMON, "otlp"),
  ...(LIGHTMON_B
    ? [
      lightmonTracer(`lightmon B (${LIGHTMON_B}) \`--output json\``, LIGHTMON_B),
      lightmonTracer(`lightmon B (${LIGHTMON_B}) \`--events close\``, LIGHTMON_B, "close"),
      lightmonTracer(`lightmon B (${LIGHTMON_B}) \`--events all\``, LIGHTMON_B, "all"),
      lightmonTracer(`lightmon B (${LIGHTMON_B}) \`--output table\``, LIGHTMON_B, "table"),
      lightmonTracer(`lightmon B (${LIGHTMON_B}) \`--flows 1s\``, LIGHTMON_B, "flows"),
      lightmonTracer(`lightmon B (${LIGHTMON_B}) \`--output otlp\``, LIGHTMON_B, "otlp"),
    ]
    : []),
  {
    name: "bpftrace (stash/emit script)",
    missing: () => (which("bpftrace") ? undefined : "bpftrace not installed (apt-get install bpftrace)"),
    start: (port, out) =>
      new Deno.Command("sh", {
        args: ["-c", `exec bpftrace -e "$0" >"${out}"`, BPFTRACE_SCRIPT(port)],
        stderr: "piped",
      }).spawn(),
    ready: (_err, out) => out.includes("Attaching"),
    count: (text) => text.split("\n").filter((l) => /^\d+ \S+ \d+ \d+$/.test(l)).length,
  },
  {
    name: "libbpf-tools tcplife",
    missing: () => (which("tcplife") ? undefined : "tcplife not installed (apt-get install libbpf-tools)"),
    start: (port, out) =>
      new Deno.Command("sh", { args: ["-c", `exec stdbuf -oL tcplife -D ${port} >"${out}"`], stderr: "piped" }).spawn(),
    ready: (_err, out) => out.includes("PID"),
    count: (text, port) => text.split("\n").filter((l) => new RegExp(`\\s${port}\\s`).test(l)).length,
  },
];

/** `clients` connectors for STORM_SECONDS, closing with RST; total connects and the rate. */
const storm = (port: number, clients: number) => timedStorm(port, clients, STORM_SECONDS);

/** An untraced storm: its rate, and the machine's CPU it took (all CPUs: the clients, the listener, softirqs). */
interface Untraced {
  rate: number;
  /** The machine's busy CPU per connection, µs. */
  cpuUs: number;
  /** How busy the machine was over the storm (0..1 of all its CPUs). */
  busy: number;
}

async function untracedStorm(port: number, clients: number): Promise<Untraced> {
  const b0 = machineBusySeconds();
  const { n, rate } = await storm(port, clients);
  const busySeconds = machineBusySeconds() - b0;
  return { rate, cpuUs: busySeconds * 1e6 / n, busy: busySeconds / ((n / rate) * navigator.hardwareConcurrency) };
}

interface Sample {
  /** The steady storm's throughput against the untraced ones beside it, and the first storm's. */
  ratio: number;
  firstRatio: number;
  /** CPU per event in the steady storm, and in the first one after start. */
  cpuUs: number;
  firstCpuUs: number;
  complete: number;
  rssMb: number;
}

/** countFile's read buffer, one for the run (a catch-up counts the file every 100 ms). */
const countBuf = new Uint8Array(16 << 20);

/**
 * What `t` counts in the file `out`, read 16 MiB at a time and cut at line ends:
 * two storms of `--events all` write more than a string can hold.
 */
function countFile(t: Tracer, out: string, port: number): number {
  if (t.counted) return t.counted();
  using f = Deno.openSync(out);
  const buf = countBuf;
  const text = new TextDecoder();
  let n = 0;
  let rest = "";
  for (let got = f.readSync(buf); got !== null; got = f.readSync(buf)) {
    const chunk = rest + text.decode(buf.subarray(0, got), { stream: true });
    const end = chunk.lastIndexOf("\n") + 1;
    n += t.count(chunk.slice(0, end), port);
    rest = chunk.slice(end);
  }
  return n + (rest ? t.count(rest, port) : 0);
}

/** Bounded: until the tracer has written `events` of the storm's events, or stops writing more. */
async function catchUp(t: Tracer, out: string, port: number, events: number): Promise<void> {
  if (t.lagMs) await new Promise((r) => setTimeout(r, t.lagMs));
  let seen = -1;
  for (let i = 0; i < 50; i++) {
    const now = countFile(t, out, port);
    if (now >= events || now === seen) return;
    seen = now;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * One traced run: start the tracer, wait until ready, then two storms, each
 * followed by its catch-up. The first storm pays the tracer's warm-up (a JIT
 * compiles its hot code then); the second is the steady state a long-running
 * monitor lives in. CPU is read around each storm and its catch-up.
 */
async function traced(t: Tracer, port: number, clients: number): Promise<
  Omit<Sample, "ratio" | "firstRatio"> & {
    rate: number;
    firstRate: number;
  }
> {
  const out = Deno.makeTempFileSync({ prefix: "lightmon-peers-" });
  const child = t.start(port, out);
  let err = "";
  const errDone = (async () => {
    for await (const c of child.stderr) err += dec.decode(c);
  })();
  const end = Date.now() + 30_000;
  while (!t.ready(err, Deno.readTextFileSync(out))) {
    if (Date.now() > end) throw new Error(`${t.name} did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 300)); // start-up CPU settles
  const per = t.perConnect ?? 1;
  const runs: { rate: number; cpuUs: number }[] = [];
  let events = 0;
  for (let i = 0; i < 2; i++) {
    const c0 = cpuSeconds(child.pid);
    const s = await storm(port, clients);
    events += s.n * per;
    await catchUp(t, out, port, events);
    runs.push({ rate: s.rate, cpuUs: (cpuSeconds(child.pid) - c0) * 1e6 / (s.n * per) });
  }
  const rssMb = peakRssMb(child.pid);
  child.kill("SIGINT");
  await child.status;
  await errDone;
  const complete = countFile(t, out, port) / events;
  Deno.removeSync(out);
  return {
    rate: runs[1].rate,
    firstRate: runs[0].rate,
    cpuUs: runs[1].cpuUs,
    firstCpuUs: runs[0].cpuUs,
    complete,
    rssMb,
  };
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench: run as root (the tracers load BPF programs)");
    Deno.exit(2);
  }
  // BENCH_ONLY=lightmon (name prefixes, separated by |) runs only the tracers so named.
  const only = Deno.env.get("BENCH_ONLY")?.split("|");
  const tracers = TRACERS.filter((t) => !only || only.some((p) => t.name.startsWith(p))).filter((t) => {
    const why = t.missing();
    if (why) console.error(`bench: skipping ${t.name}: ${why}`);
    return !why;
  });
  // Up for the whole run: each traced run is two storms, its start and catch-up, and an untraced storm.
  const listener = await startListener(ROUNDS * CLIENTS.length * (tracers.length + 1) * (3 * STORM_SECONDS + 20));
  const port = listener.port;
  const samples = new Map<string, Sample[]>(tracers.flatMap((t) => CLIENTS.map((c) => [`${t.name}/${c}`, []])));
  const untraced = new Map<number, Untraced[]>(CLIENTS.map((c) => [c, []]));
  const plain = async (clients: number) => {
    const u = await untracedStorm(port, clients);
    untraced.get(clients)!.push(u);
    return u.rate;
  };
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const clients of CLIENTS) {
        // Each traced storm is compared with the untraced storms just before and just after it.
        let before = await plain(clients);
        for (const t of tracers) {
          const run = await traced(t, port, clients);
          const after = await plain(clients);
          const beside = (before + after) / 2;
          const sample = { ...run, ratio: run.rate / beside, firstRatio: run.firstRate / beside };
          before = after;
          samples.get(`${t.name}/${clients}`)!.push(sample);
          console.error(
            `bench: round ${round}, ${clients} client(s), ${t.name}: ratio ${sample.ratio.toFixed(2)} ` +
              `(first ${sample.firstRatio.toFixed(2)}), ${sample.cpuUs.toFixed(1)} µs/event ` +
              `(first ${sample.firstCpuUs.toFixed(1)}), ${(100 * sample.complete).toFixed(1)}% reported`,
          );
        }
      }
    }
  } finally {
    listener.child.kill("SIGTERM");
    await listener.child.status;
    await otlpSink.close();
  }
  console.log(
    `\nconnect storm side by side: ${STORM_SECONDS}-second loopback storms closing with RST, ${ROUNDS} interleaved ` +
      "rounds, median (range); each tracer's second storm (steady), and its first after start\n",
  );
  const ratios = CLIENTS.map((c) => `throughput ratio, ${c} client${c === 1 ? "" : "s"}`);
  console.log(
    `| | ${ratios.join(" | ")} | tracer's own CPU per event | first storm: ratio ${CLIENTS.join(" / ")}, CPU | ` +
      "complete | peak RSS MB |",
  );
  console.log(`|---|${ratios.map(() => "---|").join("")}---|---|---|---|`);
  for (const t of tracers) {
    const each = CLIENTS.map((c) => samples.get(`${t.name}/${c}`)!);
    const all = each.flat();
    const first = `${each.map((s) => median(s.map((x) => x.firstRatio)).toFixed(2)).join(" / ")}, ${
      median(all.map((s) => s.firstCpuUs)).toFixed(1)
    } µs`;
    console.log(
      `| ${t.name} | ${each.map((s) => range(s.map((x) => x.ratio), 2)).join(" | ")} | ${
        range(all.map((s) => s.cpuUs), 1, " µs")
      } | ${first} | ${range(all.map((s) => 100 * s.complete), 1, "%")} | ${range(all.map((s) => s.rssMb), 0)} |`,
    );
  }
  // What a tracer's cost is measured against: how fast the storm runs alone, and how much of the machine it takes.
  console.log(
    "\n| untraced storm | connects a second | the machine busy | its CPU per connection |\n|---|---|---|---|",
  );
  for (const [clients, us] of untraced) {
    console.log(
      `| ${clients} client${clients === 1 ? "" : "s"} | ${range(us.map((u) => u.rate), 0)} | ${
        range(us.map((u) => 100 * u.busy), 0, "%")
      } | ${range(us.map((u) => u.cpuUs), 1, " µs")} |`,
    );
  }
}
