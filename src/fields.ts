/**
 * The field registry: every field of the event, once, with everything the rest of
 * lightmon needs to know about it: its JSON key and encoding, how filters match it,
 * its table column, its key in the original tool's log format, its part in a
 * summary flow, and one line of documentation. The JSON renderer, the filter
 * compiler, the table, the log line, the summary, `--help`, the man page and the reference tables
 * are all derived from this list, so a new field is one entry here (and its member
 * in `ConnEvent`).
 *
 * Like `event.ts` this sits at the bottom: it imports only the event type and the
 * plain text helpers in `text/`.
 * @module
 */
import { type ConnEvent, STATUSES } from "./event.ts";
import { jsonString } from "./text/sanitize.ts";
import { clockTime, rfc3339Nano, rfc3339Seconds } from "./text/time.ts";

/** A field's value as its getter returns it. */
export type Value = string | number | bigint | boolean | readonly string[] | readonly (readonly [string, number])[];

/** How a value is written into the JSON event. */
export interface JsonEncoding {
  /** The JSON type, as the reference states it. */
  readonly type: "string" | "number" | "string[]" | "boolean" | "object";
  readonly encode: (v: Value) => string;
}

/** Plain string, escaped so that no control or bidi character goes out raw. */
export const STRING: JsonEncoding = { type: "string", encode: (v) => jsonString(v as string) };
/** A word lightmon itself chose (a status, a family): never untrusted text, so written as it is. */
export const WORD: JsonEncoding = { type: "string", encode: (v) => `"${v}"` };
/** A JSON number. */
export const NUMBER: JsonEncoding = { type: "number", encode: (v) => String(v) };
/** A 64-bit integer as a decimal string (JSON numbers lose precision past 2^53). */
export const BIG: JsonEncoding = { type: "string", encode: (v) => `"${v}"` };
/** An array of strings. */
export const STRINGS: JsonEncoding = {
  type: "string[]",
  encode: (v) => `[${(v as readonly string[]).map(jsonString).join(",")}]`,
};
/** true or false. */
export const BOOL: JsonEncoding = { type: "boolean", encode: (v) => (v ? "true" : "false") };
/** Counts by lightmon's own words (a flow's statuses): an object of numbers, most first. */
export const COUNTS: JsonEncoding = {
  type: "object",
  encode: (v) =>
    `{${(v as unknown as readonly (readonly [string, number])[]).map(([k, n]) => `"${k}":${n}`).join(",")}}`,
};
/** Wall-clock ns as RFC 3339 with the local offset and nine fractional digits. */
export const TIME: JsonEncoding = { type: "string", encode: (v) => `"${rfc3339Nano(v as bigint)}"` };

/** How a filter condition on the field parses its value and matches. */
export type FilterSpec =
  & {
    /** The name in expressions; the field's key when omitted. */
    name?: string;
    /** One line for the reference and the man page; the field's doc when omitted. */
    doc?: string;
    /** One of the original lightmon's four filter fields: its place in the original's list. */
    original?: 1 | 2 | 3 | 4;
  }
  & (
    | { kind: "number"; max: number; get?: (e: ConnEvent) => number }
    | { kind: "address"; get?: (e: ConnEvent) => string }
    /** Exact, or a glob when the value has `*`. */
    | { kind: "text"; get?: (e: ConnEvent) => string }
    /** The value occurs in any of the strings. */
    | { kind: "substring"; anyOf?: readonly ((e: ConnEvent) => string)[] }
    /** One of a fixed set; `values` maps what may be typed (lower case) to what the getter returns. */
    | {
      kind: "choice";
      values: Readonly<Record<string, string>>;
      get?: (e: ConnEvent) => string;
      /** Whether the event has the value, when that is not `get(e) === value` (a flow has several statuses). */
      has?: (e: ConnEvent, value: string) => boolean;
    }
  );

/** The field's column in the live table. */
export interface ColumnSpec {
  head: string;
  /** Position, left to right. */
  at: number;
  /**
   * 1 for the most important; on a terminal too narrow for all, the highest numbers
   * go first, and spare width goes to the lowest numbers first.
   */
  priority: number;
  /** Minimum and preferred content widths. */
  min: number;
  want: number;
  /** The column that takes whatever width is left. */
  fill?: true;
  /** The cell's text (before sanitising); String(value) when omitted. */
  cell?: (e: ConnEvent) => string;
  /** Too long a cell loses its start, not its end: a path loses whole directories before its name. */
  keepEnd?: true;
  /** Shown only when the run asks for it (`--baseline`'s NEW column), so that other tables keep their shape. */
  optional?: true;
}

/** The field in the original tool's logrus line. */
export interface LogSpec {
  key: string;
  /** Written only for events it is true of; always when omitted (the original's keys). */
  when?: (e: ConnEvent) => boolean;
  /** A string is written as a JSON string, a number or boolean as itself; String(value) when omitted. */
  value?: (e: ConnEvent) => string | number | boolean;
}

/** The field as part of a summary flow's identity. */
export interface FlowSpec {
  /** Position among the flow's keys. */
  at: number;
  /** The flow's JSON key; the field's key when omitted. */
  key?: string;
  value?: (e: ConnEvent) => string | number;
}

/** An OTLP attribute's value: what the exporter's encoder takes. */
export type OtelValue = string | number | boolean | readonly string[] | Readonly<Record<string, number>>;

/** The field as an attribute of an OTLP log record. */
export interface OtelSpec {
  /** The attribute name: the OpenTelemetry semantic convention's, where there is one. */
  key: string;
  /** Its value, when it is not the JSON value's (a number as a string, a word of the convention's). */
  value?: (e: ConnEvent) => string | number;
}

/** One field of the event. */
export interface Field {
  /** The JSON key, and the name the other specs default to. */
  key: string;
  /**
   * The OTLP attribute (`--output otlp`): a semantic-convention name, or the spec; `lightmon.`
   * and the key in snake case when omitted; false for none (the record's own time).
   */
  otel?: string | OtelSpec | false;
  /** One line of documentation. */
  doc: string;
  get: (e: ConnEvent) => Value;
  /** How it is encoded in JSON; false for a field that exists only to be filtered on. */
  json: JsonEncoding | false;
  /** JSON fields of one group change together and are encoded once per distinct value set. */
  group?: "process" | "container";
  /** Written only for events it is true of (close records' fields); always when omitted. */
  when?: (e: ConnEvent) => boolean;
  filter?: FilterSpec | readonly FilterSpec[];
  column?: ColumnSpec;
  log?: LogSpec;
  flow?: FlowSpec;
}

const MAX_U32 = 2 ** 32 - 1;
const isClose = (e: ConnEvent) => e.event === "close";
const isDns = (e: ConnEvent) => e.event === "dns";
const isFlow = (e: ConnEvent) => e.event === "flow";
const notFlow = (e: ConnEvent) => e.event !== "flow";
/** Close records, and flow records (their closes' totals, the longest duration). */
const closeOrFlow = (e: ConnEvent) => e.event === "close" || e.event === "flow";
/** Checked against a baseline (`--baseline`). */
const hasVerdict = (e: ConnEvent) => e.novel !== undefined;
/** Connections are tracked (`--events` accept or close): the log line says which record it is. */
const isTracked = (e: ConnEvent) => e.connId !== 0;
/** A number filter on a close record's counter. */
const closeNumber = { kind: "number", max: Number.MAX_SAFE_INTEGER } as const;
const endpoint = (addr: string, port: number, family: 4 | 6) => family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
/** The remote end's workload on this host, when there is one: `NAMESPACE/POD`, or the container. */
export function peerLabel(e: ConnEvent): string {
  const p = e.peer;
  if (p === undefined) return "";
  return p.pod ? `${p.namespace}/${p.pod}` : p.container || p.containerId.slice(0, 12);
}
const hasPeer = (e: ConnEvent) => e.peer !== undefined;
/**
 * The remote end in the table: the local workload at the address, else the name the workload
 * resolved, when known, else the address.
 */
const remoteEnd = (e: ConnEvent) =>
  e.event === "dns"
    ? `${e.query} ${e.qtype}`
    : e.flow?.folded
    ? "* (folded)"
    : e.event === "flow" && e.direction === "inbound"
    ? peerLabel(e) || e.dnsName || (e.daddr === "" ? "*" : e.daddr) // its clients' ports vary: its port is the local one
    : e.peer
    ? `${peerLabel(e)}:${e.dport}`
    : e.dnsName
    ? `${e.dnsName}:${e.dport}`
    : endpoint(e.daddr, e.dport, e.family);
const userOrUid = (e: ConnEvent) => e.user || String(e.uid);

/** Bytes in at most five characters: `512B`, `9.8K`, `1023K`, `3.0M`. */
export function humanBytes(n: number): string {
  const units = ["B", "K", "M", "G", "T", "P"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${n}B`;
  return `${v < 9.95 ? v.toFixed(1) : Math.min(1023, Math.round(v))}${units[i]}`;
}

/** A duration in at most five characters: `21ms`, `1.3s`, `59.9s`, `12.5m`, `3.0h`, `12d`. */
export function humanDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 3_597_000) return `${(ms / 60_000).toFixed(1)}m`;
  if (ms < 86_220_000) return `${(ms / 3_600_000).toFixed(1)}h`;
  return `${Math.round(ms / 86_400_000)}d`;
}

/** A close's bytes sent and received and its duration, in at most 17 characters: `68K/0B 12ms`. */
export function closeFigures(e: ConnEvent): string {
  return `${humanBytes(e.bytesSent)}/${humanBytes(e.bytesReceived)} ${humanDuration(e.durationMs)}`;
}

/** The table's status cell: how a connect ended, an accept, how a connection closed, a DNS answer's code. */
export function statusCell(e: ConnEvent): string {
  if (e.event === "dns") return e.rcode.toLowerCase();
  if (e.flow) return flowStatusCell(e.flow);
  if (e.event === "accept") return e.status === "established" ? "accepted" : e.status;
  if (e.event !== "close") return e.status;
  return e.closedBy === "remote" ? "peer closed" : e.closedBy === "reset" ? "reset" : "closed";
}
/** A flow's: its connections (`120 conns`), how many of them did not succeed (`3/120 failed`), or its closes. */
function flowStatusCell(f: NonNullable<ConnEvent["flow"]>): string {
  if (f.connections === 0) return `${f.closes} closed`;
  const ok = f.statuses.reduce((n, [s, k]) => (s === "established" ? n + k : n), 0);
  const failed = f.statuses.reduce((n, [s, k]) => (s === "established" || s === "pending" ? n : n + k), 0);
  return failed === 0 && ok > 0 ? `${f.connections} conns` : `${failed}/${f.connections} failed`;
}
const exeOrComm = (e: ConnEvent) => e.exe || e.comm;
/** The port a flow is to: the destination port opened, or the local port accepted on. */
const servicePort = (e: ConnEvent) => (e.direction === "inbound" ? e.sport : e.dport);

/** What `status=` accepts: every status an emitted event can have. */
const STATUS_VALUES = Object.fromEntries(
  STATUSES.filter((s) => s !== "unknown" && s !== "listen").map((s) => [s, s]),
);

/** Every field, in JSON output order. */
export const FIELDS: readonly Field[] = [
  {
    key: "kernelTime",
    doc: "CLOCK_BOOTTIME ns of the event (as the original)",
    get: (e) => e.kernelTime,
    json: BIG,
  },
  {
    key: "time",
    otel: false,
    doc: "RFC 3339, local offset, nanoseconds (the original's `goTime`)",
    get: (e) => e.wallNs,
    json: TIME,
    column: { head: "TIME", at: 0, priority: 4, min: 8, want: 8, cell: (e) => clockTime(e.wallNs) },
    log: { key: "time", value: (e) => rfc3339Seconds(e.wallNs) },
  },
  {
    key: "pid",
    otel: "process.pid",
    doc: "process (tgid) that called `connect()`, host pid namespace",
    get: (e) => e.pid,
    json: NUMBER,
    filter: { kind: "number", max: MAX_U32 },
    column: { head: "PID", at: 2, priority: 3, min: 7, want: 7 },
    log: { key: "pid", value: (e) => String(e.pid) },
  },
  {
    key: "tid",
    otel: "thread.id",
    doc: "thread that called `connect()`",
    get: (e) => e.tid,
    json: NUMBER,
    when: notFlow,
  },
  {
    key: "ppid",
    otel: "process.parent_pid",
    doc: "parent tgid",
    get: (e) => e.ppid,
    json: NUMBER,
    group: "process",
    filter: { kind: "number", max: MAX_U32 },
  },
  {
    key: "uid",
    otel: { key: "user.id", value: (e) => String(e.uid) },
    doc: "user id at connect time",
    get: (e) => e.uid,
    json: NUMBER,
    group: "process",
    filter: { kind: "number", max: MAX_U32 },
  },
  { key: "gid", doc: "group id at connect time", get: (e) => e.gid, json: NUMBER, group: "process" },
  {
    key: "user",
    otel: "process.owner",
    doc: 'host user name of `uid`; `""` inside containers (their passwd is their own) or for uids without a name',
    get: (e) => e.user,
    json: STRING,
    group: "process",
    filter: { kind: "text" },
    column: { head: "USER", at: 1, priority: 6, min: 4, want: 10, cell: userOrUid },
    log: { key: "user", value: userOrUid },
    flow: { at: 1, value: userOrUid },
  },
  {
    key: "comm",
    otel: "thread.name",
    doc: "the thread's name at connect time",
    get: (e) => e.comm,
    json: STRING,
    group: "process",
    filter: { kind: "text" },
  },
  {
    key: "exe",
    otel: "process.executable.path",
    doc: 'absolute executable path; `""` when unknown',
    get: (e) => e.exe,
    json: STRING,
    group: "process",
    filter: [
      { kind: "text" },
      {
        name: "keyword",
        kind: "substring",
        anyOf: [(e) => e.exe, (e) => e.comm],
        doc: "substring of `exe` or `comm`",
        original: 3,
      },
    ],
    column: { head: "PROCESS", at: 10, priority: 1, min: 20, want: 40, fill: true, cell: exeOrComm, keepEnd: true },
    log: { key: "procPath", value: exeOrComm },
    flow: { at: 0, key: "process", value: exeOrComm },
  },
  {
    key: "args",
    otel: "process.command_args",
    doc: "argv, at most 512 bytes of it (read in the kernel at exec, or from /proc, bounded alike)",
    get: (e) => e.args,
    json: STRINGS,
    group: "process",
    log: { key: "procArgs", value: (e) => e.args.slice(1).join(" ") },
  },
  {
    key: "procSource",
    doc:
      "where `exe`/`args` came from: `exec` (seen by the kernel at exec), `proc` (/proc fallback for processes older than lightmon), `unknown`",
    get: (e) => e.procSource,
    json: WORD,
    group: "process",
  },
  {
    key: "addressFamily",
    otel: { key: "network.type", value: (e) => (e.family === 6 ? "ipv6" : "ipv4") },
    doc: "`AF_INET` or `AF_INET6`; a v4-mapped IPv6 connect is `AF_INET` with plain addresses",
    get: (e) => (e.family === 6 ? "AF_INET6" : "AF_INET"),
    json: WORD,
    filter: {
      name: "family",
      kind: "choice",
      get: (e) => (e.family === 6 ? "6" : "4"),
      values: { "4": "4", "6": "6", v4: "4", v6: "6", ipv4: "4", ipv6: "6", af_inet: "4", af_inet6: "6" },
      doc: "the address family",
    },
    column: { head: "AF", at: 3, priority: 8, min: 2, want: 2, cell: (e) => (e.family === 6 ? "v6" : "v4") },
    log: { key: "ipv6", value: (e) => (e.family === 6 ? 1 : 0) },
  },
  {
    key: "saddr",
    otel: "network.local.address",
    doc: "the real source address (not on `flow` records)",
    get: (e) => e.saddr,
    json: STRING,
    when: notFlow,
    filter: [
      { name: "sip", kind: "address", doc: "source IP or CIDR, v4 or v6: this host's end of the connection" },
      { name: "laddr", kind: "address", doc: "the local address: `sip` by its other name" },
    ],
    column: {
      head: "LOCAL",
      at: 4,
      priority: 7,
      min: 21,
      want: 22,
      // A flow's local end is its port, when inbound: its connections' addresses vary.
      cell: (e) => (e.event !== "flow" ? endpoint(e.saddr, e.sport, e.family) : e.sport ? `:${e.sport}` : ""),
    },
    log: { key: "sip" },
  },
  {
    key: "sport",
    otel: "network.local.port",
    doc: "the real source port: this host's end (for `accept`, the port listened on; for a `flow`, 0 unless inbound)",
    get: (e) => e.sport,
    json: NUMBER,
    filter: [{ kind: "number", max: 65535 }, { name: "lport", kind: "number", max: 65535, doc: "the local port" }],
    log: { key: "sport" },
  },
  {
    key: "daddr",
    otel: "network.peer.address",
    doc: "destination address: the peer's end (for `accept`, the client)",
    get: (e) => e.daddr,
    json: STRING,
    filter: [
      {
        name: "dip",
        kind: "address",
        doc: "destination IP or CIDR, v4 or v6; `dip=127.0.0.1` matches a v4-mapped connect",
        original: 2,
      },
      { name: "raddr", kind: "address", doc: "the remote (peer's) address: `dip` by its other name" },
    ],
    column: {
      head: "REMOTE",
      at: 6,
      priority: 1,
      min: 21,
      want: 28,
      cell: remoteEnd,
    },
    log: { key: "dip" },
    // Flows to one service group by its workload or name, whatever address it had each time.
    flow: { at: 4, value: (e) => peerLabel(e) || e.dnsName || e.daddr },
  },
  {
    key: "dport",
    otel: "network.peer.port",
    doc: "destination port: the peer's (0 on an inbound `flow`: its port is `sport`)",
    get: (e) => e.dport,
    json: NUMBER,
    filter: [
      { kind: "number", max: 65535, original: 1 },
      { name: "rport", kind: "number", max: 65535, doc: "the remote (peer's) port" },
    ],
    log: { key: "dport" },
    flow: { at: 5, value: servicePort },
  },
  {
    key: "dnsName",
    doc:
      'the name this workload (its network namespace) last resolved to `daddr`, learned from the DNS responses it received; `""` when none is known',
    get: (e) => e.dnsName,
    json: STRING,
    filter: { name: "dname", kind: "text", doc: "the DNS name of the remote end (`*.example.com`)" },
    log: { key: "dnsName", when: (e) => e.dnsName !== "" },
  },
  { key: "protocol", otel: "network.transport", doc: "`tcp`", get: () => "tcp", json: WORD },
  {
    key: "direction",
    doc: "`outbound` (opened here) or `inbound` (accepted here)",
    get: (e) => e.direction,
    json: WORD,
    log: { key: "direction", when: (e) => isTracked(e) || isFlow(e) },
    filter: {
      kind: "choice",
      values: { outbound: "outbound", inbound: "inbound", out: "outbound", in: "inbound" },
      doc: "who opened the connection",
    },
    flow: { at: 3 },
    column: {
      head: "",
      at: 5,
      priority: 1,
      min: 2,
      want: 2,
      cell: (e) => (e.direction === "inbound" || e.event === "dns" ? "<-" : "->"),
    },
  },
  {
    key: "event",
    doc: "`connect`, `accept`, `close` or `dns` (see `--events`), or `flow` (see `--flows`)",
    get: (e) => e.event,
    json: WORD,
    filter: {
      kind: "choice",
      values: { connect: "connect", accept: "accept", close: "close", dns: "dns", flow: "flow" },
    },
    log: { key: "event", when: (e) => isTracked(e) || isFlow(e) },
  },
  {
    key: "connId",
    doc: "joins a connection's `connect` or `accept` to its `close`; only with `--events` accept or close",
    get: (e) => e.connId,
    json: BIG,
    when: (e) => e.connId !== 0,
    log: { key: "connId", when: isTracked },
  },
  {
    key: "status",
    doc:
      "`established`, `refused`, `reset`, `timeout`, `unreachable`, `aborted`, `error`, `pending`, `existing`; `closed` on close records; on a `flow`, its commonest (all are in `statuses`)",
    get: (e) => e.status,
    json: WORD,
    filter: {
      kind: "choice",
      values: STATUS_VALUES,
      doc: "how the attempt ended; a flow matches when any of its connections did",
      has: (e, v) =>
        e.flow ? e.flow.statuses.some(([s]) => s === v) || (v === "closed" && e.flow.closes > 0) : e.status === v,
    },
    column: { head: "STATUS", at: 7, priority: 1, min: 11, want: 11, cell: statusCell },
    flow: { at: 6 },
  },
  {
    key: "latencyUs",
    doc: "`connect()` to this event, µs; for `accept`, the handshake to `accept()`; for `close`, its opening's",
    get: (e) => e.latencyUs,
    json: NUMBER,
    when: notFlow,
  },
  {
    key: "durationMs",
    doc:
      "close: the handshake (or lightmon's start, when `existing`) to the close, ms; flow: its longest closed connection's",
    get: (e) => e.durationMs,
    json: NUMBER,
    when: closeOrFlow,
    filter: closeNumber,
    log: { key: "durationMs", when: closeOrFlow, value: (e) => e.durationMs },
  },
  {
    key: "bytesSent",
    doc: "close: payload bytes sent and acknowledged (tcp_sock.bytes_acked); flow: its closes' total",
    get: (e) => e.bytesSent,
    json: NUMBER,
    when: closeOrFlow,
    column: {
      head: "TX/RX DURATION",
      at: 8,
      priority: 5,
      min: 17,
      want: 17,
      cell: (e) => (e.event === "close" || (e.flow && e.flow.closes > 0) ? closeFigures(e) : ""),
    },
    filter: closeNumber,
    log: { key: "bytesSent", when: closeOrFlow, value: (e) => e.bytesSent },
  },
  {
    key: "bytesReceived",
    doc: "close: payload bytes received (tcp_sock.bytes_received); flow: its closes' total",
    get: (e) => e.bytesReceived,
    json: NUMBER,
    when: closeOrFlow,
    filter: closeNumber,
    log: { key: "bytesReceived", when: closeOrFlow, value: (e) => e.bytesReceived },
  },
  {
    key: "retransmits",
    doc: "close: segments retransmitted",
    get: (e) => e.retransmits,
    json: NUMBER,
    when: isClose,
    filter: closeNumber,
    log: { key: "retransmits", when: isClose, value: (e) => e.retransmits },
  },
  {
    key: "rttUs",
    doc: "close: smoothed round-trip time, µs",
    get: (e) => e.rttUs,
    json: NUMBER,
    when: isClose,
    filter: closeNumber,
    log: { key: "rttUs", when: isClose, value: (e) => e.rttUs },
  },
  {
    key: "closedBy",
    doc: "close: `local` or `remote` (the side that sent the first FIN, or aborted), `reset` (by the peer)",
    get: (e) => e.closedBy,
    json: WORD,
    when: isClose,
    filter: { kind: "choice", values: { local: "local", remote: "remote", reset: "reset" } },
    log: { key: "closedBy", when: isClose },
  },
  {
    key: "existing",
    doc: "close: the connection was open before lightmon started (`durationMs` counts from the start)",
    get: (e) => e.existing,
    json: BOOL,
    when: isClose,
    log: { key: "existing", when: isClose, value: (e) => (e.existing ? 1 : 0) },
  },
  {
    key: "connections",
    doc: "flow: connections opened in its interval (connects, at their outcome or pending; accepts)",
    get: (e) => e.flow?.connections ?? 0,
    json: NUMBER,
    when: isFlow,
    filter: closeNumber,
    log: { key: "connections", when: isFlow, value: (e) => e.flow?.connections ?? 0 },
  },
  {
    key: "statuses",
    doc:
      'flow: its records by status, most first (`{"established":120,"refused":3}`); a pending and its outcome count both',
    get: (e) => e.flow?.statuses ?? [],
    json: COUNTS,
    when: isFlow,
    log: {
      key: "statuses",
      when: isFlow,
      value: (e) => (e.flow?.statuses ?? []).map(([s, n]) => `${s}=${n}`).join(" "),
    },
  },
  {
    key: "processes",
    doc:
      "flow: processes of one program in one workload whose connections it counts (each `wget` of a loop is one); `pid`, `args` are the busiest one's",
    get: (e) => e.flow?.processes ?? 0,
    json: NUMBER,
    when: isFlow,
    log: { key: "processes", when: isFlow, value: (e) => e.flow?.processes ?? 0 },
  },
  {
    key: "closes",
    doc: "flow: connections that ended in its interval (with `--events close`)",
    get: (e) => e.flow?.closes ?? 0,
    json: NUMBER,
    when: isFlow,
    filter: closeNumber,
    log: { key: "closes", when: isFlow, value: (e) => e.flow?.closes ?? 0 },
  },
  {
    key: "firstSeen",
    doc: "flow: its first record in the interval (RFC 3339)",
    get: (e) => e.flow?.firstSeen ?? 0n,
    json: TIME,
    when: isFlow,
  },
  {
    key: "lastSeen",
    doc: "flow: its last record in the interval",
    get: (e) => e.flow?.lastSeen ?? 0n,
    json: TIME,
    when: isFlow,
  },
  {
    key: "intervalStart",
    doc: "flow: the interval it counts, from the previous read of the kernel's table (or the start)",
    get: (e) => e.flow?.intervalStart ?? 0n,
    json: TIME,
    when: isFlow,
  },
  {
    key: "intervalEnd",
    doc: "flow: to this read",
    get: (e) => e.flow?.intervalEnd ?? 0n,
    json: TIME,
    when: isFlow,
  },
  {
    key: "flowCause",
    doc:
      "flow: `interval` (`--flows`: counted in the kernel by design) or `ring-busy` (lightmon was behind: these connections were counted in the kernel instead of reported one by one)",
    get: (e) => e.flow?.cause ?? "",
    json: WORD,
    when: isFlow,
    filter: { kind: "choice", values: { interval: "interval", "ring-busy": "ring-busy" } },
    log: { key: "flowCause", when: isFlow },
  },
  {
    key: "folded",
    doc:
      "flow: its user's share of the kernel's flow table was full: their connections to every remote end in one record (no address, no process)",
    get: (e) => e.flow?.folded === true,
    json: BOOL,
    when: isFlow,
    log: { key: "folded", when: (e) => e.flow?.folded === true, value: () => true },
  },
  {
    key: "query",
    otel: "dns.question.name",
    doc: "dns: the name asked (lower case, no final dot)",
    get: (e) => e.query,
    json: STRING,
    when: isDns,
    filter: { kind: "text" },
    log: { key: "query", when: isDns },
  },
  {
    key: "qtype",
    doc: "dns: the type asked (`A`, `AAAA`, ...)",
    get: (e) => e.qtype,
    json: STRING,
    when: isDns,
    log: { key: "qtype", when: isDns },
  },
  {
    key: "rcode",
    doc: "dns: the response code (`NOERROR`, `NXDOMAIN`, ...)",
    get: (e) => e.rcode,
    json: STRING,
    when: isDns,
    filter: { kind: "text" },
    log: { key: "rcode", when: isDns },
  },
  {
    key: "answers",
    doc: "dns: every answer record, as `TYPE name data`",
    get: (e) => e.answers,
    json: STRINGS,
    when: isDns,
    log: { key: "answers", when: isDns, value: (e) => e.answers.join("; ") },
  },
  {
    key: "container",
    otel: "container.name",
    doc: 'container name; `""` on the host',
    get: (e) => e.container,
    json: STRING,
    group: "container",
    filter: { kind: "substring", doc: "substring of the container name", original: 4 },
    column: { head: "CONTAINER", at: 9, priority: 2, min: 9, want: 16 },
    log: { key: "conatiner" },
    flow: { at: 2 },
  },
  {
    key: "containerId",
    otel: "container.id",
    doc: 'the container\'s 64-hex id; `""` on the host',
    get: (e) => e.containerId,
    json: STRING,
    group: "container",
  },
  {
    key: "containerRuntime",
    otel: "container.runtime.name",
    doc: '`docker`, `containerd`, `crio`, `podman` as the cgroup\'s name says, or `""`',
    get: (e) => e.containerRuntime,
    json: WORD,
    group: "container",
  },
  {
    key: "image",
    otel: "container.image.name",
    doc: 'the container\'s image; `""` on the host',
    get: (e) => e.image,
    json: STRING,
    group: "container",
    filter: { kind: "text" },
  },
  {
    key: "pod",
    otel: "k8s.pod.name",
    doc: "Kubernetes pod",
    get: (e) => e.pod,
    json: STRING,
    group: "container",
    filter: { kind: "text" },
  },
  {
    key: "namespace",
    otel: "k8s.namespace.name",
    doc: "Kubernetes namespace",
    get: (e) => e.namespace,
    json: STRING,
    group: "container",
    filter: { kind: "text" },
  },
  {
    key: "peerContainer",
    doc:
      "the container on this host at `daddr` when the connection was made (the server of a connect, the client of an accept), as its runtime named the address; only when there is one",
    get: (e) => e.peer?.container ?? "",
    json: STRING,
    when: hasPeer,
    filter: { kind: "text", doc: "the remote end's container on this host (`db`, `web-*`)" },
    log: { key: "peerContainer", when: hasPeer },
  },
  {
    key: "peerContainerId",
    doc: "its id (a pod's: its sandbox's)",
    get: (e) => e.peer?.containerId ?? "",
    json: STRING,
    when: hasPeer,
  },
  {
    key: "peerImage",
    doc: "its image",
    get: (e) => e.peer?.image ?? "",
    json: STRING,
    when: hasPeer,
    filter: { kind: "text", doc: "the remote end's image on this host" },
  },
  {
    key: "peerPod",
    doc: "the Kubernetes pod at `daddr`, a pod on this node",
    get: (e) => e.peer?.pod ?? "",
    json: STRING,
    when: hasPeer,
    filter: { kind: "text", doc: "the remote end's pod on this node" },
    log: { key: "peerPod", when: (e) => (e.peer?.pod ?? "") !== "" },
  },
  {
    key: "peerNamespace",
    doc: "its namespace",
    get: (e) => e.peer?.namespace ?? "",
    json: STRING,
    when: hasPeer,
    filter: { kind: "text", doc: "the remote end's pod's namespace" },
    log: { key: "peerNamespace", when: (e) => (e.peer?.namespace ?? "") !== "" },
  },
  { key: "cgroupId", doc: "cgroup v2 id", get: (e) => e.cgroupId, json: BIG, group: "container" },
  { key: "mntns", doc: "mount namespace of the process", get: (e) => e.mntns, json: NUMBER, group: "container" },
  { key: "netns", doc: "network namespace of the socket", get: (e) => e.netns, json: NUMBER },
  {
    key: "novel",
    doc:
      "with `--baseline`: no rule of the baseline covers this connection's flow (workload, program, remote end, port, direction); absent without one, and on `dns` records",
    get: (e) => e.novel === true,
    json: BOOL,
    when: hasVerdict,
    filter: {
      kind: "choice",
      get: (e) => (e.novel === undefined ? "" : e.novel ? "true" : "false"),
      values: { true: "true", false: "false", yes: "true", no: "false" },
      doc: "`true` for flows the baseline does not have (needs `--baseline`)",
    },
    log: { key: "novel", when: hasVerdict, value: (e) => e.novel === true },
    column: {
      head: "NEW",
      at: 0.5,
      priority: 1,
      min: 3,
      want: 3,
      cell: (e) => (e.novel ? "new" : ""),
      optional: true,
    },
  },
];

/** A filter spec with its field, name and getter resolved. */
export interface FilterField {
  name: string;
  doc: string;
  /** One of the original lightmon's (listed first, in its order). */
  original: boolean;
  spec: FilterSpec;
  field: Field;
}

/** A field's filter specs, none, one or several. */
function filterSpecs(f: Field): readonly FilterSpec[] {
  if (f.filter === undefined) return [];
  return "kind" in f.filter ? [f.filter] : f.filter;
}

/**
 * Every filter field by name: the original's four first, then the rest in registry
 * order. A Map, so that user text never reaches an object's prototype.
 */
export const FILTER_FIELDS: ReadonlyMap<string, FilterField> = new Map(
  FIELDS.flatMap((field) => filterSpecs(field).map((spec) => ({ spec, field })))
    .sort((a, b) => (a.spec.original ?? 99) - (b.spec.original ?? 99))
    .map(({ spec, field }): [string, FilterField] => {
      const name = spec.name ?? field.key;
      return [name, { name, doc: spec.doc ?? field.doc, original: spec.original !== undefined, spec, field }];
    }),
);

/** The table's columns, left to right; `optional` ones are shown only when asked for. */
export const COLUMNS: readonly (ColumnSpec & { field: Field })[] = FIELDS
  .filter((f) => f.column)
  .map((f) => ({ ...f.column!, field: f }))
  .sort((a, b) => a.at - b.at);

/** The text of a field's table cell for an event. */
export function cellText(c: ColumnSpec & { field: Field }, e: ConnEvent): string {
  return c.cell ? c.cell(e) : String(c.field.get(e));
}

/** A field as an OTLP attribute: its name, and how its value is had. */
export interface OtelField {
  key: string;
  field: Field & { json: JsonEncoding };
  get: (e: ConnEvent) => OtelValue;
  /** The value is the field's own for OTLP (`OtelSpec.value`), not its JSON value's. */
  ownValue: boolean;
}

/** `bytesSent` to `bytes_sent`. */
const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The OTLP value of a JSON encoding's value: 64-bit numbers and times as strings (exact), counts as a map. */
function otelValueOf(enc: JsonEncoding, get: (e: ConnEvent) => Value): (e: ConnEvent) => OtelValue {
  if (enc === BIG) return (e) => String(get(e));
  if (enc === TIME) return (e) => rfc3339Nano(get(e) as bigint);
  if (enc === COUNTS) {
    return (e) => Object.fromEntries(get(e) as readonly (readonly [string, number])[]);
  }
  return get as (e: ConnEvent) => OtelValue;
}

/**
 * Every field with a JSON key as an OTLP log record attribute, in registry order
 * (the record's time is the log record's own): semantic-convention names where
 * OpenTelemetry has one, `lightmon.` and the key in snake case otherwise.
 */
export const OTEL_FIELDS: readonly OtelField[] = FIELDS.flatMap((f): OtelField[] => {
  if (f.json === false || f.otel === false) return [];
  const spec: OtelSpec = typeof f.otel === "string"
    ? { key: f.otel }
    : f.otel ?? { key: `lightmon.${snakeCase(f.key)}` };
  const field = f as Field & { json: JsonEncoding };
  return [{ key: spec.key, field, get: spec.value ?? otelValueOf(f.json, f.get), ownValue: spec.value !== undefined }];
});
