/**
 * bench/dns.ts's client: sends N A queries over UDP to 127.0.0.1:53 (wherever it
 * runs: a network namespace of the benchmark's), 64 at a time, each batch's
 * answers awaited (2 s at most), and prints how many were answered.
 *
 *   deno run -A bench/dns_flood.ts N
 * @module
 */
import dgram from "node:dgram";
import dnsPacket from "dns-packet";

const n = Number(Deno.args[0]);
const s = dgram.createSocket("udp4");
let got = 0;
let waiting: (() => void) | undefined;
s.on("message", () => {
  got++;
  waiting?.();
});
await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
for (let i = 0; i < n; i += 64) {
  const batch = Math.min(64, n - i);
  const want = got + batch;
  for (let k = 0; k < batch; k++) {
    const q = dnsPacket.encode({
      type: "query",
      id: (i + k) & 0xffff,
      questions: [{ type: "A", name: "api.lightmon.test" }],
    });
    s.send(q, 53, "127.0.0.1");
  }
  const ok = await new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), 2000);
    waiting = () => {
      if (got >= want) {
        clearTimeout(t);
        resolve(true);
      }
    };
    waiting();
  });
  if (!ok) break;
}
s.close();
console.log(got);
