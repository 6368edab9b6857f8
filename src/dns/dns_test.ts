import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import { parseResponse } from "./parse.ts";
import { DnsCache, GRACE_S } from "./cache.ts";

type Answer = dnsPacket.Answer;

function response(name: string, answers: Answer[], type: "A" | "AAAA" = "A"): Uint8Array {
  return new Uint8Array(
    dnsPacket.encode({ type: "response", id: 7, flags: 0x8180, questions: [{ type, name }], answers }),
  );
}

const tcpFramed = (b: Uint8Array) => new Uint8Array([b.length >> 8, b.length & 255, ...b]);

Deno.test("a CNAME chain gives the name the client asked for, with the smallest TTL on the way", () => {
  const r = parseResponse(
    response("Alias.Lightmon.Test.", [
      { type: "CNAME", name: "alias.lightmon.test", ttl: 30, data: "mid.lightmon.test" },
      { type: "CNAME", name: "mid.lightmon.test", ttl: 5, data: "api.lightmon.test" },
      { type: "A", name: "api.lightmon.test", ttl: 60, data: "10.2.7.31" },
      { type: "A", name: "unrelated.test", ttl: 60, data: "10.9.9.9" },
    ]),
    false,
  )!;
  assert.equal(r.query, "alias.lightmon.test");
  assert.equal(r.rcode, "NOERROR");
  assert.deepEqual(r.addresses, [{ address: "10.2.7.31", ttl: 5 }]);
});

Deno.test("IPv6 answers are spelled as the events spell addresses; TCP responses are framed", () => {
  const udp = response("v6.test", [{ type: "AAAA", name: "v6.test", ttl: 9, data: "2001:db8:0:0:0:0:0:1" }], "AAAA");
  assert.deepEqual(parseResponse(udp, false)!.addresses, [{ address: "2001:db8::1", ttl: 9 }]);
  assert.deepEqual(parseResponse(tcpFramed(udp), true)!.addresses, [{ address: "2001:db8::1", ttl: 9 }]);
  // Cut short (the kernel copies at most 1024 bytes), a query, garbage: not responses.
  assert.equal(parseResponse(tcpFramed(udp).subarray(0, 20), true), undefined);
  const query = new Uint8Array(dnsPacket.encode({ type: "query", id: 1, questions: [{ type: "A", name: "x.test" }] }));
  assert.equal(parseResponse(query, false), undefined);
  assert.equal(parseResponse(new Uint8Array([1, 2, 3]), false), undefined);
});

Deno.test("hostile packets: compression loops, escape bytes, longest labels never hang or throw", () => {
  const header = [0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
  // The question's name points at itself; an answer whose name points forward.
  assert.equal(parseResponse(new Uint8Array([...header, 0xc0, 12, 0, 1, 0, 1]), false), undefined);
  const evil = parseResponse(
    response("\x1b]0;pwn\x07.test", [{ type: "A", name: "\x1b]0;pwn\x07.test", ttl: 1, data: "10.0.0.1" }]),
    false,
  );
  // The name is kept as sent; the outputs escape it (see the JSON and table tests).
  assert.equal(evil?.addresses[0]?.address, "10.0.0.1");
  const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
  assert.equal(
    parseResponse(response(long, [{ type: "A", name: long, ttl: 1, data: "10.0.0.2" }]), false)?.query,
    long,
  );
  // Random and mutated packets: every one parsed or refused, quickly.
  let seed = 42;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const valid = response("api.test", [
    { type: "CNAME", name: "api.test", ttl: 5, data: "real.test" },
    { type: "A", name: "real.test", ttl: 5, data: "127.0.0.2" },
  ]);
  const t0 = performance.now();
  for (let i = 0; i < 20_000; i++) {
    const b = i % 2 ? new Uint8Array(rnd(300)).map(() => rnd(256)) : valid.slice(0, rnd(valid.length + 1));
    if (i % 2 === 0) { for (let k = rnd(4); k > 0; k--) b[rnd(b.length || 1)] = rnd(256); }
    parseResponse(b, i % 3 === 0);
    parseResponse(Buffer.from(b), false);
  }
  // Not a timing assertion on speed: a generous bound that only a hang would break.
  assert.ok(performance.now() - t0 < 60_000);
});

Deno.test("the cache: per network namespace, newest answer wins, TTL plus grace, bounded", () => {
  let now = 0;
  const c = new DnsCache(3, () => now);
  c.learn(1n, "a.test", [{ address: "10.0.0.1", ttl: 1 }]);
  c.learn(2n, "b.test", [{ address: "10.0.0.1", ttl: 1 }]);
  assert.equal(c.lookup(1n, "10.0.0.1"), "a.test");
  assert.equal(c.lookup(2n, "10.0.0.1"), "b.test"); // two containers, one address, their own names
  c.learn(1n, "c.test", [{ address: "10.0.0.1", ttl: 1 }]);
  assert.equal(c.lookup(1n, "10.0.0.1"), "c.test");
  now = (1 + GRACE_S) * 1000 + 1;
  assert.equal(c.lookup(1n, "10.0.0.1"), "");
  c.learn(3n, "d.test", [{ address: "10.0.0.2", ttl: 60 }, { address: "10.0.0.3", ttl: 60 }]);
  c.learn(3n, "e.test", [{ address: "10.0.0.4", ttl: 60 }]);
  assert.equal(c.size, 3);
  assert.ok(c.evictions >= 1);
  c.sweep();
  assert.equal(c.lookup(3n, "10.0.0.4"), "e.test");
});

Deno.test("names learned per host (a kernel that cannot tell the netns) serve every netns", () => {
  const c = new DnsCache();
  c.learn(7n, "mine.test", [{ address: "10.0.0.1", ttl: 60 }]);
  assert.equal(c.lookup(8n, "10.0.0.1"), ""); // another namespace's name is not ours
  c.learn(0n, "host.test", [{ address: "10.0.0.2", ttl: 60 }]);
  assert.equal(c.lookup(8n, "10.0.0.2"), "host.test");
  assert.equal(c.lookup(7n, "10.0.0.1"), "mine.test");
});
