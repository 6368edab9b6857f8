/**
 * Test peer for flow records, both ends:
 *
 *   deno run -A tests/helpers/flow_peer.ts serve HOST RECV SEND
 *     listens on HOST port 0, prints `{"port":N,"pid":P}`; for every connection reads
 *     RECV bytes, writes SEND bytes, reads to the client's EOF and closes; until killed.
 *   deno run -A tests/helpers/flow_peer.ts client NAME PORT N SEND RECV CLOSED M
 *     N times: resolves NAME the way programs do (getaddrinfo), connects to PORT,
 *     writes SEND bytes, reads RECV, closes; then M connects to port CLOSED, each
 *     refused. Prints `{"pid":P,"address":A,"established":N,"refused":M}`.
 */
const [mode, ...args] = Deno.args;
const enc = new TextEncoder();
const say = (o: unknown) => Deno.stdout.write(enc.encode(JSON.stringify(o) + "\n"));

async function readExactly(conn: Deno.Conn, n: number): Promise<number> {
  const buf = new Uint8Array(64 * 1024);
  let got = 0;
  while (got < n) {
    const r = await conn.read(buf.subarray(0, Math.min(buf.length, n - got)));
    if (r === null) break;
    got += r;
  }
  return got;
}

async function writeAll(conn: Deno.Conn, n: number): Promise<void> {
  const out = new Uint8Array(n).fill(0x78);
  for (let off = 0; off < n;) off += await conn.write(out.subarray(off));
}

if (mode === "serve") {
  const [host, recv, send] = args;
  const listener = Deno.listen({ hostname: host, port: 0 });
  await say({ port: (listener.addr as Deno.NetAddr).port, pid: Deno.pid });
  for await (const conn of listener) {
    (async () => {
      try {
        await readExactly(conn, Number(recv));
        await writeAll(conn, Number(send));
        while ((await conn.read(new Uint8Array(4096))) !== null) { /* until the client's EOF */ }
      } finally {
        conn.close();
      }
    })();
  }
} else if (mode === "client") {
  const [name, port, n, send, recv, closed, m] = args;
  let address = "";
  let established = 0;
  for (let i = 0; i < Number(n); i++) {
    const conn = await Deno.connect({ hostname: name, port: Number(port) });
    address = (conn.remoteAddr as Deno.NetAddr).hostname;
    await writeAll(conn, Number(send));
    if ((await readExactly(conn, Number(recv))) !== Number(recv)) throw new Error("short read");
    conn.close();
    established++;
  }
  let refused = 0;
  for (let i = 0; i < Number(m); i++) {
    try {
      (await Deno.connect({ hostname: name, port: Number(closed) })).close();
    } catch (e) {
      if (!(e instanceof Deno.errors.ConnectionRefused)) throw e;
      refused++;
    }
  }
  await say({ pid: Deno.pid, address, established, refused });
} else {
  throw new Error(`flow_peer: unknown mode '${mode}'`);
}
