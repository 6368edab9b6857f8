import assert from "node:assert/strict";
import { parseListenAddr } from "./metrics.ts";

Deno.test("metrics addresses: host:port, [v6]:port, :port", () => {
  assert.deepEqual(parseListenAddr("127.0.0.1:9090"), { hostname: "127.0.0.1", port: 9090 });
  assert.deepEqual(parseListenAddr("[::1]:9100"), { hostname: "::1", port: 9100 });
  assert.deepEqual(parseListenAddr(":9090"), { hostname: "0.0.0.0", port: 9090 });
  assert.deepEqual(parseListenAddr("localhost:1"), { hostname: "localhost", port: 1 });
  for (const bad of ["9090", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9090", "a:b"]) {
    assert.throws(() => parseListenAddr(bad), /--metrics-addr: cannot parse/, bad);
  }
});
