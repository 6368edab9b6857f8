/**
 * Test server: listens on HOST port 0, prints `{"port":N,"pid":P}`, accepts one
 * connection, reads exactly RECV bytes, writes SEND bytes, waits for the client's
 * EOF, closes, prints `{"closed":true}` and exits. The tests compare lightmon's
 * accept and close records against what it did.
 *
 *   deno run -A tests/helpers/xfer_server.ts HOST RECV SEND
 */
const [host, recvArg, sendArg] = Deno.args;
const listener = Deno.listen({ hostname: host, port: 0 });
const enc = new TextEncoder();
await Deno.stdout.write(
  enc.encode(JSON.stringify({ port: (listener.addr as Deno.NetAddr).port, pid: Deno.pid }) + "\n"),
);
const conn = await listener.accept();
// Still listening while the connection lives, as servers do: that is how lightmon's
// start-up snapshot tells an accepted connection from an opened one.
const buf = new Uint8Array(64 * 1024);
let got = 0;
let reset = false;
try {
  while (got < Number(recvArg)) {
    const n = await conn.read(buf.subarray(0, Math.min(buf.length, Number(recvArg) - got)));
    if (n === null) break;
    got += n;
  }
  const out = new Uint8Array(Number(sendArg)).fill(0x79);
  for (let off = 0; off < out.length;) off += await conn.write(out.subarray(off));
  while ((await conn.read(buf)) !== null) { /* until the client closes */ }
} catch (e) {
  if (!(e instanceof Deno.errors.ConnectionReset)) throw e;
  reset = true; // the client aborted
}
conn.close();
listener.close();
await Deno.stdout.write(enc.encode(JSON.stringify({ closed: true, received: got, reset }) + "\n"));
