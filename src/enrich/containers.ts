/**
 * One view over the container metadata sources: the Docker API first, then the
 * runtimes' state files, each file looked up once per container.
 * @module
 */
import type { PeerName } from "../event.ts";
import type { DockerSource } from "./docker.ts";
import type { ContainerMeta, ContainerSource } from "./enricher.ts";
import type { PeerAddresses } from "./peers.ts";
import { fromContainerdBundle, fromDockerData } from "./state_files.ts";

/** A negative answer from the files is retried after this long. */
const MISS_TTL_MS = 1000;
const MAX_CACHED = 16_384;

/** Where to look. */
export interface ContainerPaths {
  dockerData: string;
  containerdTasks: string;
  /** -k8s: read containerd's CRI state even while Docker answers. */
  k8s: boolean;
}

/** The combined source. */
export class Containers implements ContainerSource {
  #docker: DockerSource | undefined;
  #paths: ContainerPaths;
  #files = new Map<string, ContainerMeta | number>();
  #peers: PeerAddresses | undefined;

  constructor(docker: DockerSource | undefined, paths: ContainerPaths, peers?: PeerAddresses) {
    this.#docker = docker;
    this.#paths = paths;
    this.#peers = peers;
  }

  /** Who held an address at wall-clock `wallNs`, as a runtime claimed it. */
  peer(address: string, wallNs: bigint): PeerName | undefined {
    return this.#peers?.lookup(address, wallNs);
  }

  /** Whether dockerd is being asked for a container's addresses. */
  peersExpected(): boolean {
    return this.#docker?.addressesPending === true;
  }

  /** Known metadata, without waiting. */
  get(id: string): ContainerMeta | undefined {
    const d = this.#docker?.get(id);
    if (d) return d;
    const cached = this.#files.get(id);
    if (typeof cached === "object") return cached;
    if (typeof cached === "number" && performance.now() - cached < MISS_TTL_MS) return undefined;
    const cri = this.#paths.k8s || !this.#docker?.connected;
    const meta = (cri ? fromContainerdBundle(this.#paths.containerdTasks, id) : undefined) ??
      fromDockerData(this.#paths.dockerData, id);
    if (this.#files.size >= MAX_CACHED) this.#files.clear();
    this.#files.set(id, meta ?? performance.now());
    return meta;
  }

  /**
   * Whether metadata for `id` may still arrive: a live runtime API was asked and
   * the answer is on its way. Events for such ids are worth holding briefly; ids
   * of other runtimes, or that dockerd disowned, are not.
   */
  expect(id: string, runtime: string): boolean {
    // Another runtime's containers (containerd, CRI-O, Podman) are not Docker's to name.
    if (runtime !== "docker" && runtime !== "") return false;
    if (!this.#docker?.connected || this.#docker.disowns(id)) return false;
    this.#docker.inspect(id);
    return true;
  }
}
