/**
 * Container names, images and Kubernetes labels from the Docker Engine API on its
 * unix socket: one list at start, then the event stream (no polling). When dockerd
 * goes away the source says so once, keeps what it knew, reconnects with backoff,
 * lists again and says when it recovered. Every call has a deadline: a dockerd that
 * accepts and never answers is "not answering", never a hang, and start-up waits
 * for it at most START_WAIT_MS.
 * @module
 */
import type { PeerName } from "../event.ts";
import type { ContainerMeta } from "./enricher.ts";
import type { PeerAddresses } from "./peers.ts";

/** A container's addresses on each network, as the list and inspect say them. */
interface NetworkSettings {
  Networks?: Record<string, { IPAddress?: string; GlobalIPv6Address?: string } | null> | null;
}

interface ListedContainer {
  Id: string;
  Names?: string[];
  Image?: string;
  Labels?: Record<string, string> | null;
  State?: string;
  NetworkSettings?: NetworkSettings | null;
}

interface InspectedContainer {
  Name?: string;
  Config?: { Image?: string; Labels?: Record<string, string> | null };
  NetworkSettings?: NetworkSettings | null;
}

interface DockerEvent {
  Type?: string;
  Action?: string;
  id?: string;
  time?: number;
  timeNano?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/** An own label's value: labels are the container creator's text, never an object's prototype. */
const label = (labels: Record<string, string>, key: string): string | undefined =>
  Object.hasOwn(labels, key) && typeof labels[key] === "string" ? labels[key] : undefined;

/**
 * Metadata from a container's name, image and labels. The container-name label
 * renames only containers Kubernetes made (named `k8s_<container>_<pod>_...`):
 * anyone who may run a container can set labels, and must not make theirs show
 * under another container's name. Pod and namespace labels fill those fields.
 */
export function metaFrom(name: string, image: string, labels: Record<string, string>): ContainerMeta {
  const plain = name.replace(/^\//, "");
  const k8s = plain.startsWith("k8s_");
  return {
    name: (k8s ? label(labels, "io.kubernetes.container.name") : undefined) ?? plain,
    image,
    pod: label(labels, "io.kubernetes.pod.name") ?? "",
    namespace: label(labels, "io.kubernetes.pod.namespace") ?? "",
  };
}

const RETRY_MIN_MS = 250;
/** A call (list, inspect, the event stream's headers) that takes longer ends the session. */
export const REQUEST_TIMEOUT_MS = 2000;
/** Start-up goes on after this long without an answer; names follow when dockerd answers. */
export const START_WAIT_MS = 1000;
const RETRY_MAX_MS = 5000;
/** The largest response body read (a list of 10,000 containers with labels is ~10 MB). */
export const MAX_BODY_BYTES = 32 << 20;
/** The longest line of the event stream (an event with every label is a few KB). */
export const MAX_EVENT_LINE = 256 << 10;
/** Containers remembered at most: a hostile socket cannot grow this without bound. */
export const MAX_CONTAINERS = 65_536;
/** Keep a destroyed container's metadata this long: its last events may still be queued. */
const KEEP_AFTER_DESTROY_MS = 60_000;

/** A response's text, refused past `max` bytes (a hostile socket's endless body). */
async function boundedText(r: Response, max: number, what: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of r.body ?? []) {
    n += c.length;
    if (n > max) throw new Error(`response to ${what} larger than ${max >> 20} MiB`);
    chunks.push(c);
  }
  const all = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) all.set(c, (off += c.length) - c.length);
  return new TextDecoder().decode(all);
}

/** The Docker metadata source. */
export class DockerSource {
  #socket: string;
  #log: (line: string) => void;
  #client: Deno.HttpClient | undefined;
  /** Aborted by close() and by any call past its deadline: ends the current session. */
  #call = new AbortController();
  #meta = new Map<string, ContainerMeta>();
  #destroyed = new Map<string, number>();
  #inFlight = new Set<string>();
  /** Ids dockerd answered 404 for: another runtime's containers, never worth a wait. */
  #notDocker = new Set<string>();
  #connected = false;
  #everConnected = false;
  #lostAt = 0;
  #lastEventTime = 0;
  #onUpdate: () => void = () => {};
  #closed = false;
  #running: Promise<void> | undefined;
  /** Ends the wait between reconnects early (at close). */
  #wake: () => void = () => {};
  /** Where containers' addresses are claimed; absent when nobody asks. */
  #peers: PeerAddresses | undefined;
  /** Each container's one PeerName, shared by its claims (a rename renames them all). */
  #peerNames = new Map<string, PeerName>();
  /** Each container's networks with a claim: their owners in #peers are `ID/NETWORK`. */
  #networks = new Map<string, Set<string>>();
  /** When a container joined each network (its `network connect` event), before it could start. */
  #joinedAt = new Map<string, Map<string, number>>();
  /** When a container last died: an inspect that answered after it says addresses it no longer holds. */
  #diedAt = new Map<string, number>();
  /** Inspects for addresses in flight. */
  #addressing = 0;

  constructor(socket: string, log: (line: string) => void, peers?: PeerAddresses) {
    this.#socket = socket;
    this.#log = log;
    this.#peers = peers;
  }

  /** Whether a container's addresses are being asked for: a record to it may be named soon. */
  get addressesPending(): boolean {
    return this.#addressing > 0;
  }

  /** Whether the event stream is up: only then is waiting for metadata worthwhile. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Whether there is no socket at all (a host without Docker). */
  get absent(): boolean {
    try {
      Deno.lstatSync(this.#socket);
      return false;
    } catch {
      return true;
    }
  }

  /** Number of containers known. */
  get size(): number {
    return this.#meta.size;
  }

  /** Called whenever metadata arrives. */
  set onUpdate(f: () => void) {
    this.#onUpdate = f;
  }

  /** Whether dockerd said it does not know this container. */
  disowns(id: string): boolean {
    return this.#notDocker.has(id);
  }

  /** Remember a container's metadata, forgetting the oldest past MAX_CONTAINERS. */
  #remember(id: string, meta: ContainerMeta): void {
    this.#meta.delete(id);
    if (this.#meta.size >= MAX_CONTAINERS) this.#meta.delete(this.#meta.keys().next().value!);
    this.#meta.set(id, meta);
  }

  /** The container's PeerName, made once and renamed in place. */
  #peerName(id: string, meta: ContainerMeta): PeerName {
    let p = this.#peerNames.get(id);
    if (!p) {
      if (this.#peerNames.size >= MAX_CONTAINERS) this.#peerNames.delete(this.#peerNames.keys().next().value!);
      this.#peerNames.set(id, p = { container: "", containerId: id, image: "", pod: "", namespace: "" });
    }
    p.container = meta.name;
    p.image = meta.image;
    p.pod = meta.pod;
    p.namespace = meta.namespace;
    return p;
  }

  /**
   * Claim the addresses a list or an inspect says a running container has, each
   * from when it joined that network (or `sinceMs`). Only dockerd's answers claim:
   * what a container says of itself (its labels, its own interfaces) never does.
   */
  #claim(id: string, meta: ContainerMeta, settings: NetworkSettings | null | undefined, sinceMs: number): void {
    const peers = this.#peers;
    const networks = settings?.Networks;
    if (!peers || !networks || typeof networks !== "object") return;
    const peer = this.#peerName(id, meta);
    const joined = this.#joinedAt.get(id);
    for (const [net, n] of Object.entries(networks)) {
      if (!n || typeof n !== "object") continue;
      const since = joined?.get(net) ?? sinceMs;
      for (const a of [n.IPAddress, n.GlobalIPv6Address]) {
        if (typeof a === "string" && a !== "") peers.claim(a, `${id}/${net}`, peer, since);
      }
      let nets = this.#networks.get(id);
      if (!nets) this.#networks.set(id, nets = new Set());
      nets.add(net);
    }
  }

  /** Ask dockerd for a container's addresses (it started, or joined a network at `atMs`). */
  #inspectAddresses(id: string, atMs: number): void {
    if (!this.#peers || !this.#connected) return;
    this.#addressing++;
    this.#get<InspectedContainer>(`/containers/${id}/json`)
      .then((c) => {
        const meta = metaFrom(c.Name ?? "", c.Config?.Image ?? "", c.Config?.Labels ?? {});
        this.#remember(id, meta);
        this.#claim(id, meta, c.NetworkSettings, atMs);
        // It died before the answer came (a client that connects and exits at once): its
        // addresses were its until then, and no longer are.
        const died = this.#diedAt.get(id);
        if (died !== undefined && died >= atMs) this.#leave(id, died);
      })
      .catch(() => {}) // the session reports a dockerd that stopped answering
      .finally(() => {
        this.#addressing--;
        this.#onUpdate();
      });
  }

  /** A container left `net` (or every network, when it died) at `atMs`. */
  #leave(id: string, atMs: number, net?: string): void {
    const nets = this.#networks.get(id);
    if (!this.#peers || !nets) return;
    for (const n of net === undefined ? [...nets] : [net]) {
      this.#peers.release(`${id}/${n}`, atMs);
      nets.delete(n);
    }
    if (nets.size === 0) this.#networks.delete(id);
  }

  /** Known metadata for a container id. */
  get(id: string): ContainerMeta | undefined {
    return this.#meta.get(id);
  }

  /** Ask dockerd about one container now (an id seen before its create event). */
  inspect(id: string): void {
    if (!this.#connected || this.#inFlight.has(id) || this.#meta.has(id)) return;
    this.#inFlight.add(id);
    this.#get<{ Name?: string; Config?: { Image?: string; Labels?: Record<string, string> | null } }>(
      `/containers/${id}/json`,
    )
      .then((c) => {
        this.#remember(id, metaFrom(c.Name ?? "", c.Config?.Image ?? "", c.Config?.Labels ?? {}));
        this.#onUpdate();
      })
      .catch((e) => {
        // 404: not Docker's (or already removed); anything else: the stream reports it.
        if (e instanceof Error && e.message.startsWith("HTTP 404")) {
          if (this.#notDocker.size >= 4096) this.#notDocker.clear();
          this.#notDocker.add(id);
          this.#onUpdate();
        }
      })
      .finally(() => this.#inFlight.delete(id));
  }

  /**
   * Start listing and following events. Resolves after the first attempt to
   * connect, or after `waitMs` if dockerd has not answered by then.
   */
  async start(waitMs = START_WAIT_MS): Promise<void> {
    let firstAttempt!: () => void;
    const first = new Promise<void>((r) => (firstAttempt = r));
    this.#running = this.#loop(firstAttempt);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, waitMs)));
    await Promise.race([first, late]);
    clearTimeout(timer);
    if (!this.#connected) this.#lost(`no answer within ${waitMs} ms`);
  }

  /** Run `call` with a deadline; past it, the session ends as "not answering". */
  async #deadline<T>(what: string, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const session = this.#call;
    const timer = setTimeout(
      () => session.abort(new Error(`not answering: ${what} took over ${REQUEST_TIMEOUT_MS} ms`)),
      REQUEST_TIMEOUT_MS,
    );
    try {
      return await call(session.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The client for the socket; a new one after each lost connection. */
  #http(): Deno.HttpClient {
    return this.#client ??= Deno.createHttpClient({ proxy: { transport: "unix", path: this.#socket } });
  }

  #get<T>(path: string): Promise<T> {
    return this.#deadline(path.split("?")[0], async (signal) => {
      const r = await fetch(`http://docker${path}`, { client: this.#http(), signal });
      if (!r.ok) {
        await r.body?.cancel();
        throw new Error(`HTTP ${r.status} for ${path}`);
      }
      return JSON.parse(await boundedText(r, MAX_BODY_BYTES, path.split("?")[0])) as T;
    });
  }

  async #loop(firstAttempt: () => void): Promise<void> {
    let delay = RETRY_MIN_MS;
    while (!this.#closed) {
      try {
        await this.#session(() => {
          delay = RETRY_MIN_MS;
          firstAttempt();
        });
        if (!this.#closed) this.#lost("the event stream ended");
      } catch (e) {
        if (this.#closed) break;
        this.#lost(this.#why(e));
      }
      firstAttempt();
      // A new client and session per attempt: a restarted dockerd is a new socket.
      this.#client?.close();
      this.#client = undefined;
      if (this.#closed) break;
      this.#call = new AbortController();
      await new Promise<void>((r) => {
        const timer = setTimeout(r, delay);
        this.#wake = () => (clearTimeout(timer), r());
      });
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  /** fetch() over a unix socket says only "fetch failed": name the usual causes. */
  #why(e: unknown): string {
    const reason = this.#call.signal.reason;
    if (this.#call.signal.aborted && reason instanceof Error) return reason.message;
    try {
      if (!Deno.statSync(this.#socket).isSocket) return "not a socket";
    } catch {
      return "no such socket";
    }
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message.split("\n")[0]}` : "";
    return msg + cause;
  }

  #lost(why: string): void {
    if (this.#connected) {
      this.#connected = false;
      this.#lostAt = Date.now();
      this.#log(
        `lightmon: docker: lost ${this.#socket} (${why}); keeping ${this.#meta.size} known containers, reconnecting`,
      );
    } else if (!this.#everConnected && this.#lostAt === 0) {
      this.#lostAt = Date.now();
      // No socket at all is a host without Docker: the start-up line says so, no warning.
      if (!this.absent) {
        this.#log(`lightmon: docker: ${this.#socket} not answering (${why}); container names will follow when it does`);
      }
    }
  }

  async #session(connected: () => void): Promise<void> {
    // Network events move addresses: a container joining or leaving a network while it runs.
    const filters = encodeURIComponent(
      JSON.stringify({ type: this.#peers ? ["container", "network"] : ["container"] }),
    );
    const since = this.#lastEventTime ? `&since=${this.#lastEventTime}` : "";
    // Subscribe before listing, so no container falls between the two.
    const events = await this.#deadline(
      "/events",
      (signal) => fetch(`http://docker/events?filters=${filters}${since}`, { client: this.#http(), signal }),
    );
    if (!events.ok || !events.body) throw new Error(`HTTP ${events.status} for /events`);
    const list = await this.#get<ListedContainer[]>("/containers/json?all=1");
    for (const c of list) {
      const meta = metaFrom(c.Names?.[0] ?? "", c.Image ?? "", c.Labels ?? {});
      this.#remember(c.Id, meta);
      // Running before we looked: its addresses are its since before anything we will see.
      if (c.State === "running") this.#claim(c.Id, meta, c.NetworkSettings, 0);
    }
    const wasLost = this.#lostAt !== 0;
    this.#connected = true;
    this.#everConnected = true;
    if (wasLost) {
      const secs = ((Date.now() - this.#lostAt) / 1000).toFixed(1);
      this.#log(`lightmon: docker: connected to ${this.#socket} after ${secs}s; ${this.#meta.size} containers known`);
      this.#lostAt = 0;
    }
    connected();
    this.#onUpdate();
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of events.body) {
      buf += dec.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) this.#event(JSON.parse(line) as DockerEvent);
      }
      if (buf.length > MAX_EVENT_LINE) throw new Error(`an event longer than ${MAX_EVENT_LINE >> 10} KiB`);
    }
  }

  /** A network event: a container joined or left a network (Actor is the network). */
  #networkEvent(ev: DockerEvent, atMs: number): void {
    const attrs = ev.Actor?.Attributes ?? {};
    const id = label(attrs, "container");
    const net = label(attrs, "name");
    if (!id || !net) return;
    if (ev.Action === "connect") {
      let joined = this.#joinedAt.get(id);
      if (!joined) {
        if (this.#joinedAt.size >= MAX_CONTAINERS) this.#joinedAt.delete(this.#joinedAt.keys().next().value!);
        this.#joinedAt.set(id, joined = new Map());
      }
      joined.set(net, atMs);
      // Asked now, before the container's process starts (its start event comes later): a
      // client that connects and exits at once is still running when dockerd answers.
      this.#inspectAddresses(id, atMs);
    } else if (ev.Action === "disconnect") {
      this.#joinedAt.get(id)?.delete(net);
      this.#leave(id, atMs, net);
    }
  }

  #event(ev: DockerEvent): void {
    if (ev.time) this.#lastEventTime = ev.time;
    const atMs = ev.timeNano ? ev.timeNano / 1e6 : (ev.time ?? 0) * 1000;
    if (ev.Type === "network") return this.#networkEvent(ev, atMs);
    const id = ev.Actor?.ID ?? ev.id;
    if (!id) return;
    const attrs = ev.Actor?.Attributes ?? {};
    switch (ev.Action) {
      case "create":
      case "start":
      case "rename": {
        // Attributes carry the name, the image and every label.
        const meta = metaFrom(attrs.name ?? "", attrs.image ?? "", attrs);
        this.#remember(id, meta);
        if (this.#peerNames.has(id)) this.#peerName(id, meta);
        this.#destroyed.delete(id);
        this.#notDocker.delete(id);
        if (ev.Action === "start") this.#inspectAddresses(id, atMs);
        this.#onUpdate();
        break;
      }
      case "die":
        if (this.#diedAt.size >= MAX_CONTAINERS) this.#diedAt.delete(this.#diedAt.keys().next().value!);
        this.#diedAt.delete(id);
        this.#diedAt.set(id, atMs);
        this.#joinedAt.delete(id);
        this.#leave(id, atMs);
        break;
      case "destroy": {
        const now = Date.now();
        this.#destroyed.set(id, now);
        for (const [old, at] of this.#destroyed) {
          if (now - at < KEEP_AFTER_DESTROY_MS) break;
          this.#meta.delete(old);
          this.#destroyed.delete(old);
          this.#peerNames.delete(old);
          this.#diedAt.delete(old);
        }
        break;
      }
    }
  }

  /** Stop following events. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#call.abort();
    this.#wake();
    await this.#running?.catch(() => {});
    this.#client?.close();
  }
}
