/**
 * What the storm benchmarks share: the test client, a loopback listener, and a
 * process's CPU time and peak RSS from /proc.
 * @module
 */
export const ROOT = new URL("..", import.meta.url).pathname;
export const CONNECTOR = `${ROOT}build/connector`;
export const LIGHTMON = `${ROOT}lightmon`;
const TICKS = 100; // USER_HZ
const dec = new TextDecoder();

/** A listener that accepts and closes every connection, for at most `seconds`. */
export async function startListener(seconds = 600): Promise<{ port: number; child: Deno.ChildProcess }> {
  const child = new Deno.Command(CONNECTOR, {
    args: ["-L", "-T", String(seconds), "127.0.0.1", "0"],
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  return { port: Number(dec.decode(value).trim()), child };
}

/** `clients` connectors for `seconds`, closing with RST: total connects and the rate. */
export async function timedStorm(port: number, clients: number, seconds: number): Promise<{ n: number; rate: number }> {
  const t0 = performance.now();
  const runs = await Promise.all(
    Array.from({ length: clients }, () =>
      new Deno.Command(CONNECTOR, {
        args: ["-q", "-r", "-n", "100000000", "-T", String(seconds), "127.0.0.1", String(port)],
        stdout: "piped",
      }).output()),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const n = runs.reduce((a, r) => a + JSON.parse(dec.decode(r.stdout)).established, 0);
  if (n === 0) throw new Error(`a storm to port ${port} established no connection: is the listener still up?`);
  return { n, rate: n / elapsed };
}

/** The median of `xs` (the upper one of an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** `median (min-max)` of `xs`, each with `digits` decimals and `unit`; one value alone. */
export function range(xs: number[], digits: number, unit = ""): string {
  const s = [...xs].sort((a, b) => a - b);
  const f = (x: number) => x.toFixed(digits) + unit;
  return s.length > 1 ? `${f(median(s))} (${f(s[0])}-${f(s[s.length - 1])})` : f(s[0]);
}

/** User+system CPU seconds of a process, all threads. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / TICKS; // utime + stime
}

/** CPU seconds the whole machine has been busy (all CPUs: user, system, interrupts, steal; not idle or iowait). */
export function machineBusySeconds(): number {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + steal) / TICKS;
}

/** Peak resident set size, MB. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * A lightmon run for a benchmark: started from `command` (the launcher, or `sh -c`
 * to redirect its output to a file) with its stdout discarded and its stderr kept.
 */
export class Lightmon {
  readonly child: Deno.ChildProcess;
  stderr = "";
  #errDone: Promise<void>;

  constructor(args: string[], command = LIGHTMON) {
    const child = new Deno.Command(command, { args, stdout: "null", stderr: "piped" }).spawn();
    this.child = child;
    this.#errDone = (async () => {
      for await (const c of child.stderr) this.stderr += dec.decode(c);
    })();
  }

  /** Resolves at the start-up line; throws after `ms`. */
  async ready(ms = 30_000, pollMs = 50): Promise<void> {
    const end = Date.now() + ms;
    while (!this.stderr.includes("lightmon: capture ")) {
      if (Date.now() > end) throw new Error(`lightmon did not start: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** SIGINT, and wait for the exit and the last of stderr (the exit line). */
  async stop(): Promise<void> {
    this.child.kill("SIGINT");
    await this.child.status;
    await this.#errDone;
  }

  /** The last line lightmon wrote: the exit line after stop(). */
  get lastLine(): string | undefined {
    return this.stderr.trim().split("\n").at(-1);
  }
}
