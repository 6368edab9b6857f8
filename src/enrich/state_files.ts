/**
 * Container metadata from runtime state files, for when no runtime API answers:
 * containerd's task bundles (CRI annotations carry pod, namespace and container
 * names) and Docker's own config.v2.json under its data root.
 * @module
 */
import { metaFrom } from "./docker.ts";
import type { ContainerMeta } from "./enricher.ts";

/** containerd's runtime v2 task root. */
export const CONTAINERD_TASKS = "/run/containerd/io.containerd.runtime.v2.task";

function readJson(path: string): unknown {
  try {
    return JSON.parse(Deno.readTextFileSync(path));
  } catch {
    return undefined;
  }
}

/** Metadata from a containerd bundle's config.json, if it has CRI annotations. */
export function fromContainerdBundle(root: string, id: string): ContainerMeta | undefined {
  let namespaces: string[];
  try {
    namespaces = [...Deno.readDirSync(root)].filter((d) => d.isDirectory).map((d) => d.name);
  } catch {
    return undefined;
  }
  for (const ns of namespaces) {
    const spec = readJson(`${root}/${ns}/${id}/config.json`) as { annotations?: Record<string, string> } | undefined;
    const a = spec?.annotations;
    if (!a?.["io.kubernetes.cri.container-name"]) continue;
    return {
      name: a["io.kubernetes.cri.container-name"],
      image: a["io.kubernetes.cri.image-name"] ?? "",
      pod: a["io.kubernetes.cri.sandbox-name"] ?? "",
      namespace: a["io.kubernetes.cri.sandbox-namespace"] ?? "",
    };
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
