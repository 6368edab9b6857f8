/**
 * DNS responses as the kernel copied them (the start of the packet's payload, at
 * most 1024 bytes) to what lightmon learns from them: the name the client asked
 * for, and every address it was given, through CNAME chains, with its TTL. The
 * wire format is dns-packet's to parse; anything it refuses, or that does not
 * add up, is malformed: counted, never fatal.
 * @module
 */
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import ipaddr from "ipaddr.js";

/** An address a response gave for the name asked. */
export interface Learned {
  address: string;
  /** Seconds: the smallest TTL on the way from the name asked to the address. */
  ttl: number;
}

/** What one response says. */
export interface DnsResponse {
  /** The id the query carried. */
  id: number;
  /** The name the client asked for, lower-cased, without the final dot. */
  query: string;
  qtype: string;
  rcode: string;
  /** Every answer record, as `type name data`. */
  answers: string[];
  /** The addresses for `query`, CNAMEs followed. */
  addresses: Learned[];
}

/** Longest CNAME chain followed (a loop or a longer chain gives up). */
const MAX_CHAIN = 16;
/** Longest name kept (the protocol's limit is 253 characters). */
const MAX_NAME = 253;

const norm = (name: string) => name.toLowerCase().replace(/\.$/, "");

/**
 * Parse a response's bytes: UDP data as it is, TCP data after its two-byte length.
 * Undefined when it is not a whole, well-formed response (cut short, a query, a
 * bad pointer, a compression loop: dns-packet refuses those).
 */
export function parseResponse(bytes: Uint8Array, tcp: boolean): DnsResponse | undefined {
  let body = bytes;
  if (tcp) {
    if (bytes.length < 2) return undefined;
    const n = (bytes[0] << 8) | bytes[1];
    if (n + 2 > bytes.length) return undefined; // cut short: the rest was not copied
    body = bytes.subarray(2, 2 + n);
  }
  // dns-packet's decoder also sets `rcode`, which its types leave out.
  let p: dnsPacket.Packet & { rcode?: string };
  try {
    p = dnsPacket.decode(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  } catch {
    return undefined;
  }
  const q = p.questions?.[0];
  if (p.type !== "response" || !q || typeof q.name !== "string" || q.name.length > MAX_NAME) return undefined;
  const query = norm(q.name);
  const answers = (p.answers ?? []) as (dnsPacket.Answer & { data?: unknown; ttl?: number })[];
  // Walk the CNAME chain from the name asked, keeping the smallest TTL.
  const names = new Map<string, number>([[query, Infinity]]);
  for (let step = 0, grew = true; grew && step < MAX_CHAIN; step++) {
    grew = false;
    for (const a of answers) {
      if (a.type !== "CNAME" || typeof a.data !== "string") continue;
      const from = names.get(norm(a.name));
      const to = norm(a.data);
      if (from !== undefined && !names.has(to)) {
        names.set(to, Math.min(from, a.ttl ?? 0));
        grew = true;
      }
    }
  }
  const addresses: Learned[] = [];
  for (const a of answers) {
    if ((a.type !== "A" && a.type !== "AAAA") || typeof a.data !== "string") continue;
    const via = names.get(norm(a.name));
    if (via === undefined || !ipaddr.isValid(a.data)) continue;
    // Spelled as the connection events spell addresses (RFC 5952 for IPv6).
    addresses.push({ address: ipaddr.parse(a.data).toString(), ttl: Math.min(via, a.ttl ?? 0) });
  }
  return {
    id: p.id ?? 0,
    query,
    qtype: String(q.type),
    rcode: String(p.rcode ?? ""),
    answers: answers.map((a) => `${a.type} ${norm(a.name)} ${typeof a.data === "string" ? a.data : ""}`),
    addresses,
  };
}
