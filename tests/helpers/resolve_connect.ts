/**
 * Test client: resolves NAME the way programs do (getaddrinfo, through the
 * resolv.conf of wherever it runs), connects to PORT on the first address, and
 * prints `{"pid":P,"sport":S,"address":A}`.
 *
 *   deno run -A tests/helpers/resolve_connect.ts NAME PORT
 */
const [name, port] = Deno.args;
const conn = await Deno.connect({ hostname: name, port: Number(port) });
const local = conn.localAddr as Deno.NetAddr;
const remote = conn.remoteAddr as Deno.NetAddr;
console.log(JSON.stringify({ pid: Deno.pid, sport: local.port, address: remote.hostname }));
conn.close();
