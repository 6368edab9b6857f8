/**
 * End-to-end: lightmon as a root daemon facing dependencies that stall, clients
 * that misbehave and readers that stop reading. Never stuck, every loss counted.
 */
import assert from "node:assert/strict";
import { assertDetached, bpfTest, connect, Lightmon, listen } from "./harness.ts";

/** A unix socket that accepts every connection and never answers. */
function silentSocket(): { path: string; close: () => void } {
  const dir = Deno.makeTempDirSync({ prefix: "lightmon-silent-" });
  const path = `${dir}/docker.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const c of listener) held.push(c);
  })().catch(() => {});
  return {
    path,
    close() {
      listener.close();
      held.forEach((c) => c.close());
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

bpfTest("a Docker socket that accepts and never answers delays start-up by about a second, no more", async () => {
  const sock = silentSocket();
  const v4 = listen("127.0.0.1");
  const t0 = Date.now();
  const lm = new Lightmon(["--output", "json", "--docker-runtime", sock.path]);
  try {
    await lm.ready(10_000);
    const startMs = Date.now() - t0;
    assert.match(lm.stderr, /lightmon: docker: \S+ not answering \(no answer within 1000 ms\)/);
    assert.match(lm.stderr, /lightmon: capture .*containers: docker \(not answering\)/);
    assert.ok(startMs < 4000, `start-up took ${startMs} ms`);
    const [t] = await connect("127.0.0.1", v4.port);
    await lm.until((out) => out.includes(`"pid":${t.pid},`), 5000, "the connect");
  } finally {
    const t1 = Date.now();
    const st = await lm.stop("SIGTERM");
    assert.equal(st.code, 0, lm.stderr);
    assert.ok(Date.now() - t1 < 3000, "stopping waited on the silent socket");
    v4.close();
    sock.close();
  }
  await assertDetached();
});
