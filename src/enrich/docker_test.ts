import assert from "node:assert/strict";
import { DockerSource, MAX_BODY_BYTES, REQUEST_TIMEOUT_MS } from "./docker.ts";

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

/** Write all of `bytes` (a socket's write may take part of them). */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

Deno.test("docker: a hostile socket's endless event line or response body ends the session, bounded", async () => {
  const enc = new TextEncoder();
  for (const attack of ["line", "body"] as const) {
    const hostile = server(async (conn, req) => {
      try {
        if (/^GET \S*\/events/.test(req)) {
          await writeAll(conn, enc.encode(CHUNKED));
          if (attack === "line") {
            // One event that never ends: 1 MiB in 64 KiB chunks, no newline.
            const chunk = "x".repeat(64 << 10);
            for (let i = 0; i < 16; i++) {
              await writeAll(conn, enc.encode(`${chunk.length.toString(16)}\r\n${chunk}\r\n`));
            }
          }
        } else if (/^GET \S*\/containers\/json/.test(req)) {
          if (attack === "line") return await writeAll(conn, enc.encode(json("[]")));
          const size = MAX_BODY_BYTES + (1 << 20);
          await writeAll(
            conn,
            enc.encode(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${size}\r\n\r\n[`),
          );
          const block = enc.encode(" ".repeat(1 << 20));
          for (let sent = 1; sent < size; sent += block.length) await writeAll(conn, block);
        }
      } catch { /* the client went away */ }
    });
    const lines: string[] = [];
    const d = new DockerSource(hostile.path, (l) => lines.push(l));
    try {
      await d.start(3000);
      const t0 = performance.now();
      const want = attack === "line"
        ? /an event longer than 256 KiB/
        : /response to \/containers\/json larger than 32 MiB/;
      while (!lines.some((l) => want.test(l)) && performance.now() - t0 < 5000) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(lines.some((l) => want.test(l)), `${attack}: ${lines.join("\n")}`);
    } finally {
      await d.close();
      hostile.close();
    }
  }
});
