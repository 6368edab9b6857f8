/**
 * `--metrics-addr`: Prometheus text exposition of lightmon's own counters, through
 * prom-client. No label carries an address or a pid: cardinality stays bounded.
 * @module
 */
import { Counter, Gauge, Registry } from "prom-client";
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
  processMisses: number;
  containerMisses: number;
  processCacheEntries: number;
  ringFill: number;
  ringFillMax: number;
  dockerConnected: boolean;
  strategy: string;
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
  total("lightmon_events_seen_total", "Connection events received from the kernel", (x) => x.seen);
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

/** The HTTP endpoint; `close()` stops it. */
export class MetricsServer {
  #server: Deno.HttpServer;
  #ac = new AbortController();
  #read: (() => MetricsSnapshot) | undefined;
  #snap: MetricsSnapshot | undefined;
  readonly addr: string;

  constructor(addr: string) {
    const { hostname, port } = parseListenAddr(addr);
    this.addr = addr;
    const reg = registry(() => this.#snap!);
    try {
      this.#server = Deno.serve({ hostname, port, signal: this.#ac.signal, onListen: () => {} }, async (req) => {
        if (new URL(req.url).pathname !== "/metrics") return new Response("see /metrics\n", { status: 404 });
        if (!this.#read) return new Response("starting\n", { status: 503 });
        this.#snap = this.#read(); // one consistent snapshot per scrape
        return new Response(await reg.metrics(), { headers: { "content-type": reg.contentType } });
      });
    } catch (e) {
      const why = e instanceof Deno.errors.AddrInUse ? "address already in use" : e instanceof Error ? e.message : e;
      throw new UsageError(`--metrics-addr ${addr}: cannot listen (${why})`);
    }
  }

  /** Start answering with what `read` returns. */
  serve(read: () => MetricsSnapshot): void {
    this.#read = read;
  }

  async close(): Promise<void> {
    this.#ac.abort();
    await this.#server.finished.catch(() => {});
  }
}
