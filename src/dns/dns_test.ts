import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import { parseResponse } from "./parse.ts";
import { DnsCache, GRACE_S, MAX_TTL_S, sharesOf } from "./cache.ts";
import { DnsStage, QUERY_SHARE } from "./stage.ts";
import type { RawDns, RawDnsQuery } from "../capture/decode.ts";
import { harness } from "../testdata/stage.ts";

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

const query = (over: Partial<RawDnsQuery> = {}, name = "api.example.com", id = 7): RawDnsQuery => ({
  kind: "dns_query",
  tsNs: 1_000_000_000n,
  pid: 42,
  tid: 42,
  uid: 1000,
  netnsCookie: 5n,
  cgroupId: 1n,
  procStartNs: 9n,
  sport: 40000,
  dnsId: id,
  family: 4,
  daddr: "127.0.0.53",
  data: new Uint8Array(dnsPacket.encode({ type: "query", id, questions: [{ type: "A", name }] })),
  comm: "curl",
  cgroup: "",
  cgroupParent: "",
  ...over,
});

const answer = (over: Partial<RawDns> = {}, name = "api.example.com", address = "127.0.66.66", id = 7): RawDns => {
  const data = new Uint8Array(
    dnsPacket.encode({
      type: "response",
      id,
      flags: 0x8180,
      questions: [{ type: "A", name }],
      answers: [{ type: "A", name, ttl: 60, data: address }],
    }),
  );
  return {
    kind: "dns",
    tsNs: 1_001_000_000n,
    netnsCookie: 5n,
    cgroupId: 1n,
    family: 4,
    proto: 17,
    saddr: "127.0.0.53",
    daddr: "127.0.0.1",
    dport: 40000,
    data,
    payloadLen: data.length,
    ...over,
  };
};

Deno.test("a response is learned from only when it answers a query seen leaving: resolver, port, id, question, in time", () => {
  const s = new DnsStage();
  harness(s);
  // Nobody asked: a datagram from port 53 to any socket names nothing.
  s.push(answer());
  assert.equal(s.cache.lookup(5n, "127.0.66.66"), "");
  // Asked, but answered from another resolver, to another port, with another id, another question, or too late.
  s.push(query());
  s.push(answer({ saddr: "127.0.0.9" }));
  s.push(answer({ dport: 40001 }));
  s.push(answer({}, "api.example.com", "127.0.66.66", 8));
  s.push(answer({}, "evil.example.com"));
  s.push(answer({ netnsCookie: 6n }));
  s.push(answer({ tsNs: 12_000_000_000n }));
  assert.equal(s.cache.lookup(5n, "127.0.66.66"), "");
  const c = s.counters();
  assert.deepEqual(
    [c["unanswered.no-query"], c["unanswered.other-question"], c["unanswered.late"], c.responses],
    [5, 1, 1, 0],
  );
  // The answer to the question asked: learned, once.
  s.push(query());
  s.push(answer());
  assert.equal(s.cache.lookup(5n, "127.0.66.66"), "api.example.com");
  s.push(answer({}, "api.example.com", "127.0.77.77"));
  assert.equal(s.cache.lookup(5n, "127.0.77.77"), "", "a second answer to one query is not believed");
  assert.equal(s.counters().responses, 1);
  // Case is the resolver's to vary (0x20): the question still matches.
  s.push(query({}, "WWW.Example.COM", 9));
  s.push(answer({}, "www.example.com", "127.0.88.88", 9));
  assert.equal(s.cache.lookup(5n, "127.0.88.88"), "www.example.com");
});

Deno.test("one asker's flood of queries pushes out its own oldest, never another's", () => {
  const s = new DnsStage();
  harness(s);
  s.push(query({ uid: 1000, sport: 1 }, "victim.example.com", 1));
  for (let i = 0; i < QUERY_SHARE + 500; i++) s.push(query({ uid: 65534, sport: 2 + (i >> 16) }, "x.test", i & 0xffff));
  s.push(answer({ dport: 1 }, "victim.example.com", "127.0.1.1", 1));
  assert.equal(s.cache.lookup(5n, "127.0.1.1"), "victim.example.com");
  assert.equal(s.counters()["queries-evicted"], 500);
  assert.equal(s.counters().queriesWaiting, QUERY_SHARE);
});

Deno.test("the cache's shares: one user's answers evict its own names, never another user's or another namespace's", () => {
  const c = new DnsCache(100, () => 0, 10);
  c.learn(1n, "victim.test", [{ address: "10.9.9.9", ttl: 60 }], sharesOf(1n, 1000));
  c.learn(2n, "root.test", [{ address: "10.9.9.8", ttl: 60 }], sharesOf(2n, 0));
  // nobody, in its own namespaces (a rootless container each): its uid's share bounds them all.
  for (let i = 0; i < 50; i++) {
    c.learn(
      BigInt(10 + (i % 5)),
      "flood.test",
      [{ address: `10.0.0.${i}`, ttl: 60 }],
      sharesOf(BigInt(10 + (i % 5)), 65534),
    );
  }
  assert.equal(c.lookup(1n, "10.9.9.9"), "victim.test");
  assert.equal(c.lookup(2n, "10.9.9.8"), "root.test");
  assert.equal(c.size, 12);
  assert.equal(c.shareEvictions, 40);
  assert.equal(c.evictions, 0);
  // A TTL is believed for a day at most.
  let now = 0;
  const d = new DnsCache(10, () => now);
  d.learn(1n, "long.test", [{ address: "10.1.1.1", ttl: 2 ** 31 - 1 }]);
  now = (MAX_TTL_S + GRACE_S) * 1000 - 1;
  assert.equal(d.lookup(1n, "10.1.1.1"), "long.test");
  now += 2;
  assert.equal(d.lookup(1n, "10.1.1.1"), "");
});

Deno.test("a DNS event names the asking process by pid and start time, so a reused pid is not taken for it", () => {
  const s = new DnsStage(true);
  const h = harness(s);
  s.push(query({ pid: 42, procStartNs: 9_000n }));
  s.push(answer());
  assert.equal(h.out.length, 1);
  const e = h.out[0];
  assert.ok(e.kind === "connect");
  // The process cache looks (pid, start) up: a pid 42 started at any other time is not this one.
  assert.deepEqual([e.event, e.pid, e.procStartNs, e.startNs], ["dns", 42, 9_000n, 1_000_000_000n]);
});
