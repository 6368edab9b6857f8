/**
 * Soak: lightmon under a steady one-client connect storm for a long while, its RSS
 * sampled as it goes. The question is whether memory stays flat (no leak, no slow
 * growth) and nothing is lost at the storm's rate.
 *
 *   deno run -A bench/soak.ts            # 10 minutes, `--output json` to /dev/null
 *   SOAK_SECONDS=60 SOAK_ARGS="--events all" deno run -A bench/soak.ts
 *
 * Bounded: the storm runs in 30-second pieces for SOAK_SECONDS in all, to a
 * loopback listener this script starts.
 * @module
 */
import { CONNECTOR, Lightmon, startListener } from "./lib.ts";

const SECONDS = Number(Deno.env.get("SOAK_SECONDS") ?? 600);
const EXTRA = (Deno.env.get("SOAK_ARGS") ?? "").split(" ").filter(Boolean);
const PIECE = 30;
const dec = new TextDecoder();

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) / 1024 : NaN;
}

if (Deno.uid() !== 0) {
  console.error("soak: run as root (lightmon loads BPF programs)");
  Deno.exit(2);
}
const listener = await startListener(SECONDS + 120);
const lm = new Lightmon([
  "--output",
  "json",
  "--include",
  `dport=${listener.port} || lport=${listener.port}`,
  ...EXTRA,
]);
try {
  await lm.ready();
  const samples: number[] = [rssMb(lm.child.pid)];
  let connects = 0;
  const t0 = Date.now();
  for (let done = 0; done < SECONDS; done += PIECE) {
    const out = await new Deno.Command(CONNECTOR, {
      args: [
        "-q",
        "-r",
        "-n",
        "100000000",
        "-T",
        String(Math.min(PIECE, SECONDS - done)),
        "127.0.0.1",
        String(listener.port),
      ],
    }).output();
    connects += JSON.parse(dec.decode(out.stdout)).established;
    samples.push(rssMb(lm.child.pid));
    console.error(`soak: ${done + PIECE} s, ${connects} connects, RSS ${samples.at(-1)!.toFixed(1)} MB`);
  }
  const seconds = (Date.now() - t0) / 1000;
  await lm.stop();
  // The first minute warms up (heap growth, caches).
  const after = samples.length > 3 ? samples.slice(2) : samples;
  console.log(
    `soak: ${connects} connects in ${seconds.toFixed(0)} s (${(connects / seconds).toFixed(0)}/s); RSS MB at start ${
      samples[0].toFixed(1)
    }, after the first minute ${Math.min(...after).toFixed(1)}-${Math.max(...after).toFixed(1)}, at the end ${
      samples.at(-1)!.toFixed(1)
    }`,
  );
  console.log(lm.lastLine);
} finally {
  try {
    lm.child.kill("SIGKILL");
  } catch { /* exited */ }
  listener.child.kill("SIGTERM");
  await listener.child.status;
}
