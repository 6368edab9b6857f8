import assert from "node:assert/strict";
import { DockerSource, REQUEST_TIMEOUT_MS } from "./docker.ts";

/** A unix socket server that accepts and hands each connection to `serve`. */
function server(serve: (conn: Deno.Conn, request: string) => void): { path: string; close: () => void } {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/docker.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const buf = new Uint8Array(4096);
      conn.read(buf).then((n) => serve(conn, new TextDecoder().decode(buf.subarray(0, n ?? 0)))).catch(() => {});
    }
  })().catch(() => {});
  return {
    path,
    close: () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

const CHUNKED = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
const json = (body: string) =>
  `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

Deno.test("docker: a socket that accepts and never answers holds start-up at most the start wait", async () => {
  const silent = server(() => {}); // reads the request, answers nothing
  const lines: string[] = [];
  const d = new DockerSource(silent.path, (l) => lines.push(l));
  const t0 = performance.now();
  await d.start(300);
  const waited = performance.now() - t0;
  try {
    assert.ok(waited < 1000, `start() took ${waited} ms`);
    assert.equal(d.connected, false);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /docker: .*docker\.sock not answering \(no answer within 300 ms\)/);
    // Closing does not wait for the silent socket either.
    const c0 = performance.now();
    await d.close();
    assert.ok(performance.now() - c0 < 500, "close() waited on the silent socket");
  } finally {
    silent.close();
  }
});

Deno.test("docker: an inspect that never answers ends the session instead of leaving names stuck", async () => {
  const enc = new TextEncoder();
  // Answers the event stream (headers, then silence) and the list; swallows inspects.
  const half = server((conn, req) => {
    if (/^GET \S*\/events/.test(req)) conn.write(enc.encode(CHUNKED)).catch(() => {});
    else if (/^GET \S*\/containers\/json/.test(req)) conn.write(enc.encode(json("[]"))).catch(() => {});
  });
  const lines: string[] = [];
  const d = new DockerSource(half.path, (l) => lines.push(l));
  try {
    await d.start();
    assert.equal(d.connected, true, lines.join("\n"));
    d.inspect("a".repeat(64));
    const t0 = performance.now();
    while (d.connected && performance.now() - t0 < REQUEST_TIMEOUT_MS + 2000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(d.connected, false, "still waiting on the inspect");
    assert.ok(
      lines.some((l) => /docker: lost .*not answering: \/containers\/a+\/json took over 2000 ms/.test(l)),
      lines.join("\n"),
    );
  } finally {
    await d.close();
    half.close();
  }
});
