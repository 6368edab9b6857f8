import assert from "node:assert/strict";
import type { PeerName } from "../event.ts";
import { EnrichStage } from "./enricher.ts";
import { ProcessCache } from "./process_cache.ts";
import { UserNames } from "./users.ts";
import { canonicalAddress, KEEP_ENDED_MS, MAX_ADDRESSES, MAX_CLAIMS, PeerAddresses } from "./peers.ts";

const name = (container: string): PeerName => ({
  container,
  containerId: `${container}-id`,
  image: "img",
  pod: "",
  namespace: "",
});
const ns = (ms: number) => BigInt(ms) * 1_000_000n;

Deno.test("peers: an address reused after its container stopped names each by the record's own time", () => {
  const p = new PeerAddresses();
  p.claim("172.17.0.3", "old/bridge", name("old"), 1000);
  p.release("old/bridge", 2000);
  p.claim("172.17.0.3", "new/bridge", name("new"), 3000);
  assert.equal(p.lookup("172.17.0.3", ns(1500))?.container, "old");
  assert.equal(p.lookup("172.17.0.3", ns(2000)), undefined, "ended at 2000");
  assert.equal(p.lookup("172.17.0.3", ns(2500)), undefined, "nobody between the two");
  assert.equal(p.lookup("172.17.0.3", ns(3000))?.container, "new");
  assert.equal(p.lookup("172.17.0.3", ns(999)), undefined, "before anyone had it");
  assert.equal(p.lookup("172.17.0.4", ns(1500)), undefined);
});

Deno.test("peers: two claims holding at once name nobody", () => {
  const p = new PeerAddresses();
  p.claim("10.0.0.5", "a/net1", name("a"), 0);
  p.claim("10.0.0.5", "b/net2", name("b"), 500);
  assert.equal(p.lookup("10.0.0.5", ns(100))?.container, "a");
  assert.equal(p.lookup("10.0.0.5", ns(600)), undefined);
  p.release("b/net2", 700);
  assert.equal(p.lookup("10.0.0.5", ns(800))?.container, "a");
});

Deno.test("peers: claiming again keeps the time and takes the new name; release ends only the owner's", () => {
  const p = new PeerAddresses();
  const first = name("web");
  p.claim("fd00::5", "web/v6net", first, 100);
  p.claim("fd00::5", "web/v6net", { ...first, container: "web-renamed" }, 900);
  assert.equal(p.lookup("fd00::5", ns(200))?.container, "web-renamed");
  p.claim("10.1.0.5", "web/v6net", first, 100);
  assert.deepEqual([...p.holding("web/v6net")].sort(), ["10.1.0.5", "fd00::5"]);
  p.release("web/v6net", 1000, "10.1.0.5");
  assert.deepEqual([...p.holding("web/v6net")], ["fd00::5"]);
  assert.equal(p.lookup("fd00::5", ns(5000))?.container, "web-renamed");
  assert.equal(p.lookup("10.1.0.5", ns(5000)), undefined);
  p.release("web/v6net", 6000);
  assert.equal(p.holding("web/v6net").size, 0);
});

Deno.test("peers: addresses are kept as the decoder writes them", () => {
  assert.equal(canonicalAddress("fd00:0:0:0::0005"), "fd00::5");
  assert.equal(canonicalAddress("::ffff:172.17.0.2"), "172.17.0.2");
  assert.equal(canonicalAddress("172.17.0.2"), "172.17.0.2");
  assert.equal(canonicalAddress("not-an-address"), "");
  assert.equal(canonicalAddress(""), "");
  const p = new PeerAddresses();
  p.claim("FD00:0::5", "x/n", name("x"), 0);
  p.claim("garbage", "x/n", name("x"), 0);
  assert.equal(p.size, 1);
  assert.equal(p.lookup("fd00::5", ns(1))?.container, "x");
});

Deno.test("peers: bounded in addresses, claims per address, and ended claims' lifetime", () => {
  const p = new PeerAddresses();
  for (let i = 0; i < MAX_CLAIMS + 3; i++) {
    p.claim("10.9.0.1", `c${i}/n`, name(`c${i}`), i * 10);
    p.release(`c${i}/n`, i * 10 + 5);
  }
  // The newest ended claims are kept.
  assert.equal(p.lookup("10.9.0.1", ns((MAX_CLAIMS + 2) * 10 + 1))?.container, `c${MAX_CLAIMS + 2}`);
  assert.equal(p.lookup("10.9.0.1", ns(1)), undefined, "the oldest went");
  p.expire((MAX_CLAIMS + 2) * 10 + 5 + KEEP_ENDED_MS);
  assert.equal(p.size, 0);
  for (let i = 0; i <= MAX_ADDRESSES; i++) {
    p.claim(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, "o", name("o"), 0);
  }
  assert.equal(p.size, MAX_ADDRESSES);
  assert.equal(p.forgotten, 1);
  assert.equal(p.lookup("10.0.0.0", ns(1)), undefined, "the longest-known address went");
  assert.equal(p.holding("o").size, MAX_ADDRESSES);
});

Deno.test("peers: addresses forgotten for want of room are the enrich stage's notable counter", () => {
  const p = new PeerAddresses();
  const stage = new EnrichStage({
    clock: { wallNs: (b: bigint) => b },
    users: new UserNames(),
    processes: new ProcessCache({ proc: { startNs: () => 0n, exe: () => "", cwd: () => "/", args: () => [] } }),
    containers: { get: () => undefined },
    peers: p,
  });
  for (let i = 0; i <= MAX_ADDRESSES + 2; i++) {
    p.claim(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, "o", name("o"), 0);
  }
  assert.equal(stage.counters().peerAddressesForgotten, 3);
  assert.ok(stage.notable.has("peerAddressesForgotten"));
});
