import assert from "node:assert/strict";
import { MetricsServer, parseListenAddr } from "./metrics.ts";

Deno.test("metrics addresses: host:port, [v6]:port, :port", () => {
  assert.deepEqual(parseListenAddr("127.0.0.1:9090"), { hostname: "127.0.0.1", port: 9090 });
  assert.deepEqual(parseListenAddr("[::1]:9100"), { hostname: "::1", port: 9100 });
  assert.deepEqual(parseListenAddr(":9090"), { hostname: "0.0.0.0", port: 9090 });
  assert.deepEqual(parseListenAddr("localhost:1"), { hostname: "localhost", port: 1 });
  for (const bad of ["9090", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9090", "a:b"]) {
    assert.throws(() => parseListenAddr(bad), /--metrics-addr: cannot parse/, bad);
  }
});

/** A port nobody listens on right now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolves when the peer closes `c` (a read returns null or fails). */
async function closedByPeer(c: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(1024);
  try {
    while (await c.read(buf) !== null) { /* a response, then the close */ }
  } catch { /* reset */ }
}

Deno.test("metrics: half-sent requests are closed after the idle timeout, connections are capped, and trickling clients cannot lock scrapes out", async () => {
  const limits = { maxConnections: 8, idleMs: 300, lifetimeMs: 1500 };
  const m = await MetricsServer.open(`127.0.0.1:${freePort()}`, limits);
  const snapshot = {
    seen: 1,
    emitted: 1,
    filtered: 0,
    kernelFiltered: 0n,
    byStatus: new Map([["established 4", 1]]),
    lost: 0n,
    dropped: { "ring-full": 0 },
    processMisses: 0,
    containerMisses: 0,
    processCacheEntries: 0,
    ringFill: 0,
    ringFillMax: 0,
    dockerConnected: false,
    strategy: "tp_btf",
  };
  m.serve(() => snapshot);
  const conns: Deno.Conn[] = [];
  try {
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: m.port });
      await c.write(new TextEncoder().encode("GET /metrics HTTP/1.1\r\nHost: x\r\n")); // never finished
      conns.push(c);
    }
    await Promise.all(conns.map(closedByPeer));
    const took = performance.now() - t0;
    assert.ok(took < 1400, `slow clients held for ${took} ms`);
    assert.ok(m.refused >= 100 - limits.maxConnections, `refused ${m.refused}`);
    // A client that trickles a byte within every idle period still ends at the lifetime.
    const trickle = await Deno.connect({ hostname: "127.0.0.1", port: m.port });
    conns.push(trickle);
    const t1 = performance.now();
    const refusedBefore = m.refused;
    await trickle.write(new TextEncoder().encode("GET /metrics HTTP/1.1\r\n"));
    const header = new TextEncoder().encode("X-Slow: 1\r\n");
    const dripping = setInterval(() => trickle.write(header).catch(() => {}), 100);
    await closedByPeer(trickle);
    clearInterval(dripping);
    const held = performance.now() - t1;
    assert.equal(m.refused, refusedBefore, "the trickling client was refused, not timed out");
    assert.ok(held >= 1000 && held < 3000, `trickling client held ${held} ms`);
    // Every slot held by a client trickling its headers: a scrape is still answered, at once.
    const holders: ReturnType<typeof setInterval>[] = [];
    for (let i = 0; i < limits.maxConnections; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: m.port });
      conns.push(c);
      await c.write(new TextEncoder().encode("GET /metrics HTTP/1.1\r\n"));
      holders.push(setInterval(() => c.write(header).catch(() => {}), 100));
    }
    try {
      const t2 = performance.now();
      const scrape = await fetch(`http://127.0.0.1:${m.port}/metrics`);
      assert.equal(scrape.status, 200);
      await scrape.text();
      assert.ok(performance.now() - t2 < 500, `scrape took ${performance.now() - t2} ms with every slot held`);
    } finally {
      holders.forEach(clearInterval);
    }
    // And a proper scrape is answered afterwards.
    const r = await fetch(`http://127.0.0.1:${m.port}/metrics`);
    assert.equal(r.status, 200);
    assert.match(await r.text(), /lightmon_events_seen_total 1/);
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await m.close();
  }
});

Deno.test("metrics: closed connections' durations as a histogram and their bytes by direction, no address labels", async () => {
  const m = await MetricsServer.open(`127.0.0.1:${freePort()}`);
  m.serve(() => ({
    seen: 2,
    emitted: 2,
    filtered: 0,
    kernelFiltered: 0n,
    byStatus: new Map([["closed 4", 2]]),
    lost: 0n,
    dropped: {},
    processMisses: 0,
    containerMisses: 0,
    processCacheEntries: 0,
    ringFill: 0,
    ringFillMax: 0,
    dockerConnected: false,
    strategy: "tp_btf",
    stages: { join: { forgotten: 3, open: 9 }, dns: { "unanswered.no-query": 4 } },
    kernel: { unstashed: 5n },
  }));
  try {
    m.observeClose(20, 1048576, 3145728);
    m.observeClose(90_000, 10, 0);
    const text = await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text();
    assert.match(text, /^lightmon_connection_duration_seconds_bucket\{le="0\.1"\} 1$/m);
    assert.match(text, /^lightmon_connection_duration_seconds_bucket\{le="60"\} 1$/m);
    assert.match(text, /^lightmon_connection_duration_seconds_bucket\{le="300"\} 2$/m);
    assert.match(text, /^lightmon_connection_duration_seconds_count 2$/m);
    assert.match(text, /^lightmon_bytes_total\{direction="sent"\} 1048586$/m);
    assert.match(text, /^lightmon_bytes_total\{direction="received"\} 3145728$/m);
    // Every stage's counters, and the kernel's, by one mechanism.
    assert.match(text, /^lightmon_stage_counter\{stage="join",counter="forgotten"\} 3$/m);
    assert.match(text, /^lightmon_stage_counter\{stage="join",counter="open"\} 9$/m);
    assert.match(text, /^lightmon_stage_counter\{stage="dns",counter="unanswered.no-query"\} 4$/m);
    assert.match(text, /^lightmon_stage_counter\{stage="kernel",counter="unstashed"\} 5$/m);
  } finally {
    await m.close();
  }
});
