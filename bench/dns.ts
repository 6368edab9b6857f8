/**
 * What DNS capture costs: lightmon's CPU per DNS response under a flood of
 * queries to a real server (dnsmasq in a network namespace this script makes),
 * the name cache's memory at 100,000 entries, and whether a DNS flood costs
 * connection events (it must not: they are delivered, or counted as lost).
 *
 *   deno run -A bench/dns.ts        # root; needs dnsmasq (make setup)
 * @module
 */
import { CONNECTOR, cpuSeconds, Lightmon } from "./lib.ts";
import { DnsCache } from "../src/dns/cache.ts";

const QUERIES = Number(Deno.env.get("BENCH_DNS_QUERIES") ?? 50_000);
const dec = new TextDecoder();

async function sh(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")}: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/** The cache's heap at 100,000 entries (names of 20-odd characters, IPv4 addresses). */
function cacheMemoryMb(): number {
  const c = new DnsCache();
  // deno-lint-ignore no-explicit-any
  const gc = (globalThis as any).gc as (() => void) | undefined;
  gc?.();
  const before = Deno.memoryUsage().heapUsed;
  for (let i = 0; i < 100_000; i++) {
    c.learn(BigInt(i % 50), `svc-${i}.prod.example.com`, [{
      address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      ttl: 300,
    }]);
  }
  gc?.();
  const mb = (Deno.memoryUsage().heapUsed - before) / 2 ** 20;
  if (c.size !== 100_000) throw new Error(`cache holds ${c.size}`);
  return mb;
}

if (Deno.uid() !== 0) {
  console.error("bench: run as root");
  Deno.exit(2);
}
console.log(`DNS name cache at 100,000 entries: ${cacheMemoryMb().toFixed(1)} MB of heap`);

const ns = `lmdnsbench${Deno.pid}`;
await sh("ip", ["netns", "add", ns]);
const hosts = await Deno.makeTempFile();
const flood = new URL("./dns_flood.ts", import.meta.url).pathname;
let server: Deno.ChildProcess | undefined;
try {
  await sh("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
  await Deno.writeTextFile(hosts, "127.0.0.2 api.lightmon.test\n");
  server = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      "dnsmasq",
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      `--addn-hosts=${hosts}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--port=53",
      "--user=root",
      "--pid-file=",
      "--dns-forward-max=1000",
      "--cache-size=0",
    ],
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 500));
  for (const dns of [true, false]) {
    const lm = new Lightmon(["--output", "json", `-dns=${dns}`, "--include", "dport=9"]);
    await lm.ready();
    await new Promise((r) => setTimeout(r, 300));
    const c0 = cpuSeconds(lm.child.pid);
    const t0 = performance.now();
    // The flood, and a connect storm to a closed port (refused: no listener needed) beside it.
    const [answered, storm] = await Promise.all([
      new Deno.Command("ip", {
        args: ["netns", "exec", ns, Deno.execPath(), "run", "-A", flood, String(QUERIES)],
        stdout: "piped",
        stderr: "piped",
      }).output(),
      new Deno.Command(CONNECTOR, { args: ["-q", "-n", "20000", "127.0.0.1", "9"] }).output(),
    ]);
    const seconds = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 500));
    const c1 = cpuSeconds(lm.child.pid);
    await lm.stop();
    const n = Number(dec.decode(answered.stdout).trim());
    const refused = 20000 - JSON.parse(dec.decode(storm.stdout)).established;
    const ledger = lm.lastLine;
    console.log(
      `-dns=${dns}: ${n} DNS responses in ${seconds.toFixed(1)} s (${
        (n / seconds).toFixed(0)
      }/s) beside ${refused} refused connects; ` +
        `lightmon CPU ${((c1 - c0) * 1e6 / n).toFixed(2)} µs per response${dns ? "" : " (no capture)"}; ${ledger}`,
    );
    if (!answered.success) console.log(dec.decode(answered.stderr).split("\n")[0]);
  }
} finally {
  if (server) {
    server.kill("SIGTERM");
    await server.status;
  }
  await sh("ip", ["netns", "del", ns]).catch(() => "");
  await Deno.remove(hosts);
}
