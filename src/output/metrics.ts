/**
 * `--metrics-addr`: Prometheus text exposition of lightmon's own counters, through
 * prom-client. No label carries an address or a pid: cardinality stays bounded.
 * @module
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { UsageError } from "../usage_error.ts";
import { VERSION } from "../version.ts";

/** What the metrics read at scrape time. */
export interface MetricsSnapshot {
  seen: number;
  emitted: number;
  filtered: number;
  kernelFiltered: bigint;
  /** emitted events by `${status} ${family}` */
  byStatus: ReadonlyMap<string, number>;
  lost: bigint;
  /** Events dropped, by cause (the ledger's `dropped`). */
  dropped: Readonly<Record<string, number>>;
  processMisses: number;
  containerMisses: number;
  processCacheEntries: number;
  ringFill: number;
  ringFillMax: number;
  dockerConnected: boolean;
  strategy: string;
  /** DNS capture's counters (absent with -dns=false). */
  dns?: {
    udp: number;
    tcp: number;
    malformed: number;
    cutShort: number;
    /** Answering no query seen leaving: never learned from. */
    unanswered: number;
    lost: number;
    entries: number;
    evictions: number;
  };
  /** With --baseline: novel connections reported (connect and accept records), by status. */
  novelByStatus?: ReadonlyMap<string, number>;
  /** Every stage's counters, and the kernel's: each is a lightmon_stage_counter, so none goes unseen. */
  stages?: Readonly<Record<string, Readonly<Record<string, number>>>>;
  kernel?: Readonly<Record<string, bigint>>;
}

/** Parse `host:port`, `[v6]:port` or `:port` (all addresses). */
export function parseListenAddr(addr: string): { hostname: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(`--metrics-addr: cannot parse '${addr}'; use HOST:PORT, e.g. 127.0.0.1:9090`);
  }
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Close records as they are written: the connection's duration and bytes (`--events close`). */
export interface CloseObserver {
  observeClose(durationMs: number, bytesSent: number, bytesReceived: number): void;
  /** A flow record's closes: their bytes (their durations are not known one by one). */
  observeBytes(bytesSent: number, bytesReceived: number): void;
}

/** Duration buckets, seconds: a loopback request to a day-long session. */
const DURATION_BUCKETS = [0.001, 0.01, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 86400];

function closeMetrics(r: Registry): CloseObserver {
  const duration = new Histogram({
    name: "lightmon_connection_duration_seconds",
    help: "Duration of closed connections, handshake to close (close records written)",
    buckets: DURATION_BUCKETS,
    registers: [r],
  });
  const bytes = new Counter({
    name: "lightmon_bytes_total",
    help: "Payload bytes of closed connections, by direction (close records written)",
    labelNames: ["direction"],
    registers: [r],
  });
  return {
    observeClose(durationMs, sent, received) {
      duration.observe(durationMs / 1000);
      this.observeBytes(sent, received);
    },
    observeBytes(sent, received) {
      bytes.inc({ direction: "sent" }, sent);
      bytes.inc({ direction: "received" }, received);
    },
  };
}

/** A registry whose collectors read the snapshot `s()` taken for the current scrape. */
function registry(s: () => MetricsSnapshot): Registry {
  const r = new Registry();
  const total = (name: string, help: string, get: (x: MetricsSnapshot) => number | bigint) =>
    new Counter({
      name,
      help,
      registers: [r],
      collect() {
        this.reset();
        this.inc(Number(get(s())));
      },
    });
  new Counter({
    name: "lightmon_connections_total",
    help: "Connection events emitted, by status and address family",
    labelNames: ["status", "family"],
    registers: [r],
    collect() {
      this.reset();
      for (const [key, n] of s().byStatus) {
        const [status, family] = key.split(" ");
        this.inc({ status, family }, n);
      }
    },
  });
  total(
    "lightmon_events_seen_total",
    "Connection events seen (kernel and user space): emitted + filtered + dropped",
    (x) => x.seen,
  );
  total("lightmon_events_emitted_total", "Connection events written to the output", (x) => x.emitted);
  new Counter({
    name: "lightmon_events_dropped_total",
    help: "Connection events seen but not written, by cause",
    labelNames: ["cause"],
    registers: [r],
    collect() {
      this.reset();
      for (const [cause, n] of Object.entries(s().dropped)) this.inc({ cause }, n);
    },
  });
  new Counter({
    name: "lightmon_events_filtered_total",
    help: "Events dropped by -include/-exclude/-v6, in the kernel or in lightmon",
    labelNames: ["where"],
    registers: [r],
    collect() {
      this.reset();
      this.inc({ where: "kernel" }, Number(s().kernelFiltered));
      this.inc({ where: "user" }, s().filtered);
    },
  });
  total("lightmon_events_lost_total", "Events lost because the ring buffer was full", (x) => x.lost);
  new Counter({
    name: "lightmon_enrichment_misses_total",
    help: "Events whose process was not known from exec (process) or container not named (container)",
    labelNames: ["kind"],
    registers: [r],
    collect() {
      this.reset();
      this.inc({ kind: "process" }, s().processMisses);
      this.inc({ kind: "container" }, s().containerMisses);
    },
  });
  const gauge = (name: string, help: string, get: (x: MetricsSnapshot) => number) =>
    new Gauge({
      name,
      help,
      registers: [r],
      collect() {
        this.set(get(s()));
      },
    });
  new Counter({
    name: "lightmon_dns_responses_total",
    help: "DNS responses learned from, by transport",
    labelNames: ["transport"],
    registers: [r],
    collect() {
      this.reset();
      const d = s().dns;
      if (!d) return;
      this.inc({ transport: "udp" }, d.udp);
      this.inc({ transport: "tcp" }, d.tcp);
    },
  });
  new Counter({
    name: "lightmon_dns_responses_unused_total",
    help:
      "DNS responses not learned from: malformed, longer than the copy (cut), not copied (lost: ring full), or answering no query seen leaving (unanswered)",
    labelNames: ["reason"],
    registers: [r],
    collect() {
      this.reset();
      const d = s().dns;
      if (!d) return;
      this.inc({ reason: "malformed" }, d.malformed);
      this.inc({ reason: "cut" }, d.cutShort);
      this.inc({ reason: "lost" }, d.lost);
      this.inc({ reason: "unanswered" }, d.unanswered);
    },
  });
  new Counter({
    name: "lightmon_novel_connections_total",
    help: "Connections (connect and accept records) reported whose flow the --baseline does not have, by status",
    labelNames: ["status"],
    registers: [r],
    collect() {
      this.reset();
      for (const [status, n] of s().novelByStatus ?? []) this.inc({ status }, n);
    },
  });
  total(
    "lightmon_dns_cache_evictions_total",
    "Names dropped from the DNS cache to stay within its bound",
    (x) => x.dns?.evictions ?? 0,
  );
  gauge("lightmon_dns_cache_entries", "Addresses with a name in the DNS cache", (x) => x.dns?.entries ?? 0);
  new Gauge({
    name: "lightmon_stage_counter",
    help: "Every counter of every pipeline stage and of the kernel side, as the stage keeps it (totals and sizes)",
    labelNames: ["stage", "counter"],
    registers: [r],
    collect() {
      this.reset();
      const snap = s();
      for (const [stage, counters] of Object.entries(snap.stages ?? {})) {
        for (const [counter, n] of Object.entries(counters)) this.set({ stage, counter }, n);
      }
      for (const [counter, n] of Object.entries(snap.kernel ?? {})) this.set({ stage: "kernel", counter }, Number(n));
    },
  });
  gauge("lightmon_ringbuf_fill_ratio", "Ring buffer fill at the last drain (0-1)", (x) => x.ringFill);
  gauge("lightmon_ringbuf_fill_ratio_max", "Highest ring buffer fill seen at a drain (0-1)", (x) => x.ringFillMax);
  gauge("lightmon_process_cache_entries", "Processes in the process cache", (x) => x.processCacheEntries);
  gauge("lightmon_docker_connected", "1 while the Docker event stream is up", (x) => (x.dockerConnected ? 1 : 0));
  new Gauge({
    name: "lightmon_build_info",
    help: "Version and capture strategy",
    labelNames: ["version", "strategy"],
    registers: [r],
    collect() {
      this.reset();
      this.set({ version: VERSION, strategy: s().strategy }, 1);
    },
  });
  return r;
}

/** Limits that keep a scraper, or anyone who can reach the port, from holding descriptors. */
export interface MetricsLimits {
  /** Connections held at once; past it, the oldest that has not sent a whole request is closed for the newcomer. */
  maxConnections: number;
  /** A connection that sends or reads nothing for this long is closed (half-sent requests). */
  idleMs: number;
  /** No connection lives longer than this, however it trickles. */
  lifetimeMs: number;
}

export const METRICS_LIMITS: MetricsLimits = { maxConnections: 32, idleMs: 5000, lifetimeMs: 30_000 };

/**
 * The HTTP endpoint, on node:http for its connection limits (Deno.serve has no
 * header timeout or connection cap). `close()` stops it.
 */
export class MetricsServer implements CloseObserver {
  #server: http.Server;
  #closes: CloseObserver;
  #read: (() => MetricsSnapshot) | undefined;
  #snap: MetricsSnapshot | undefined;
  /** Open connections, oldest first, with whether each is being answered. */
  #sockets = new Map<Socket, { requested: boolean }>();
  readonly addr: string;
  /** Connections closed at the cap to make room, for the tests and the docs' claim. */
  refused = 0;

  private constructor(addr: string, limits: MetricsLimits) {
    this.addr = addr;
    const reg = registry(() => this.#snap!);
    this.#closes = closeMetrics(reg);
    this.#server = http.createServer(async (req, res) => {
      // Being answered: not to be closed for a newcomer. Kept alive after, it is idle again.
      const state = this.#sockets.get(req.socket);
      if (state) {
        state.requested = true;
        res.on("finish", () => state.requested = false);
      }
      const path = (req.url ?? "").split("?")[0];
      if (req.method !== "GET" || path !== "/metrics") return res.writeHead(404).end("see /metrics\n");
      if (!this.#read) return res.writeHead(503).end("starting\n");
      this.#snap = this.#read(); // one consistent snapshot per scrape
      const body = await reg.metrics();
      res.writeHead(200, { "content-type": reg.contentType }).end(body);
    });
    this.#server.setTimeout(limits.idleMs, (sock) => sock.destroy());
    this.#server.on("connection", (sock: Socket) => {
      if (this.#sockets.size >= limits.maxConnections) {
        // Full: make room by closing the oldest connection not being answered (a client trickling its
        // headers, or idle between requests), so that clients holding slots cannot lock scrapes out.
        let victim: Socket | undefined;
        for (const [s, st] of this.#sockets) {
          if (!st.requested) {
            victim = s;
            break;
          }
        }
        this.refused++;
        if (!victim) return sock.destroy(); // every slot is answering a request: it soon frees one
        this.#sockets.delete(victim);
        victim.destroy();
      }
      this.#sockets.set(sock, { requested: false });
      const timer = setTimeout(() => sock.destroy(), limits.lifetimeMs);
      sock.on("close", () => {
        clearTimeout(timer);
        this.#sockets.delete(sock);
      });
    });
  }

  /** Listen on `addr`; a port in use or an address not ours is one line (UsageError). */
  static async open(addr: string, limits = METRICS_LIMITS): Promise<MetricsServer> {
    const { hostname, port } = parseListenAddr(addr);
    const m = new MetricsServer(addr, limits);
    await new Promise<void>((resolve, reject) => {
      m.#server.once("error", (e: NodeJS.ErrnoException) => {
        const why = e.code === "EADDRINUSE" ? "address already in use" : e.message;
        reject(new UsageError(`--metrics-addr ${addr}: cannot listen (${why})`));
      });
      m.#server.listen(port, hostname, () => resolve());
    });
    return m;
  }

  /** The port listened on. */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  observeBytes(bytesSent: number, bytesReceived: number): void {
    this.#closes.observeBytes(bytesSent, bytesReceived);
  }

  observeClose(durationMs: number, bytesSent: number, bytesReceived: number): void {
    this.#closes.observeClose(durationMs, bytesSent, bytesReceived);
  }

  /** Start answering with what `read` returns. */
  serve(read: () => MetricsSnapshot): void {
    this.#read = read;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.#server.close(() => r()));
    for (const s of this.#sockets.keys()) s.destroy();
    await closed;
  }
}
