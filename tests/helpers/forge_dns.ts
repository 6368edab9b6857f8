/**
 * Attack helper: in a network namespace of its own (where it may bind port 53),
 * sends the DNS response given in hex from 127.0.0.1:53 to an unrelated socket of
 * its own that asked nothing, then connects to ADDR:PORT and prints
 * `{"pid":P,"sport":S}`. lightmon must not take the response's names.
 *
 *   deno run -A --unstable-net tests/helpers/forge_dns.ts HEX ADDR PORT
 */
const [hex, addr, port] = Deno.args;
const bytes = new Uint8Array(hex.match(/../g)!.map((b) => parseInt(b, 16)));
const victim = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 5353 });
const resolver = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 53 });
await resolver.send(bytes, { transport: "udp", hostname: "127.0.0.1", port: 5353 });
await victim.receive();
// Received: the kernel's copy has gone to lightmon by now. A listener, so that the connect completes.
const listener = Deno.listen({ hostname: "0.0.0.0", port: Number(port) });
const conn = await Deno.connect({ hostname: addr, port: Number(port) });
console.log(JSON.stringify({ pid: Deno.pid, sport: (conn.localAddr as Deno.NetAddr).port }));
conn.close();
listener.close();
victim.close();
resolver.close();
