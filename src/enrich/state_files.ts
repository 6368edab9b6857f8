/**
 * Container metadata from runtime state files, for when no runtime API answers:
 * containerd's task bundles (CRI annotations carry pod, namespace and container
 * names) and Docker's own config.v2.json under its data root.
 * @module
 */
import { metaFrom } from "./docker.ts";
import type { ContainerMeta } from "./enricher.ts";
import { readRootFile } from "./root_file.ts";

/** containerd's runtime v2 task root. */
export const CONTAINERD_TASKS = "/run/containerd/io.containerd.runtime.v2.task";

/** The largest state file read: an OCI spec or a container's config is tens of KB. */
const MAX_STATE_BYTES = 4 << 20;

/** A runtime's JSON state file, read as root's only, bounded (root_file.ts). */
function readJson(path: string): unknown {
  const text = readRootFile(path, MAX_STATE_BYTES);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An own annotation's value: annotations are the pod's author's text, never an object's prototype. */
const annotation = (a: Record<string, unknown>, key: string): string =>
  Object.hasOwn(a, key) && typeof a[key] === "string" ? a[key] as string : "";

/** Metadata from a containerd bundle's config.json, if it has CRI annotations. */
export function fromContainerdBundle(root: string, id: string): ContainerMeta | undefined {
  let namespaces: string[];
  try {
    namespaces = [...Deno.readDirSync(root)].filter((d) => d.isDirectory).map((d) => d.name);
  } catch {
    return undefined;
  }
  for (const ns of namespaces) {
    const spec = readJson(`${root}/${ns}/${id}/config.json`) as { annotations?: Record<string, unknown> } | undefined;
    const a = spec?.annotations;
    if (!a || typeof a !== "object") continue;
    const name = annotation(a, "io.kubernetes.cri.container-name");
    if (!name) continue;
    return {
      name,
      image: annotation(a, "io.kubernetes.cri.image-name"),
      pod: annotation(a, "io.kubernetes.cri.sandbox-name"),
      namespace: annotation(a, "io.kubernetes.cri.sandbox-namespace"),
    };
  }
  return undefined;
}

/**
 * The pod of a CRI pod sandbox, from its containerd bundle's annotations (the
 * sandbox id is what the CNI plugins were given as the container id).
 */
export function sandboxPod(root: string, id: string): { pod: string; namespace: string } | undefined {
  if (!/^[\w.-]{1,128}$/.test(id)) return undefined;
  let namespaces: string[];
  try {
    namespaces = [...Deno.readDirSync(root)].filter((d) => d.isDirectory).map((d) => d.name);
  } catch {
    return undefined;
  }
  for (const ns of namespaces) {
    const spec = readJson(`${root}/${ns}/${id}/config.json`) as { annotations?: Record<string, unknown> } | undefined;
    const a = spec?.annotations;
    if (!a || typeof a !== "object" || annotation(a, "io.kubernetes.cri.container-type") !== "sandbox") continue;
    const pod = annotation(a, "io.kubernetes.cri.sandbox-name");
    if (pod) return { pod, namespace: annotation(a, "io.kubernetes.cri.sandbox-namespace") };
  }
  return undefined;
}

/** Metadata from Docker's <data root>/containers/<id>/config.v2.json. */
export function fromDockerData(dataRoot: string, id: string): ContainerMeta | undefined {
  const c = readJson(`${dataRoot}/containers/${id}/config.v2.json`) as
    | { Name?: string; Config?: { Image?: string; Labels?: Record<string, string> | null } }
    | undefined;
  if (!c?.Name) return undefined;
  return metaFrom(c.Name, c.Config?.Image ?? "", c.Config?.Labels ?? {});
}
