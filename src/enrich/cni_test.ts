import assert from "node:assert/strict";
import { CniReservations } from "./cni.ts";
import { PeerAddresses } from "./peers.ts";
import { readRootFile } from "./root_file.ts";

const isRoot = Deno.uid() === 0;
const ns = (ms: number) => BigInt(Math.round(ms)) * 1_000_000n;

/** A CNI networks root and a containerd task root, as a node would have them. */
function node(): { root: string; tasks: string; close: () => void } {
  const base = Deno.makeTempDirSync({ prefix: "lightmon-cni-" });
  const root = `${base}/networks`;
  const tasks = `${base}/tasks`;
  Deno.mkdirSync(`${root}/pods`, { recursive: true, mode: 0o755 });
  Deno.mkdirSync(`${tasks}/k8s.io`, { recursive: true, mode: 0o755 });
  return { root, tasks, close: () => Deno.removeSync(base, { recursive: true }) };
}

/** A CRI pod sandbox's bundle: the annotations containerd's CRI plugin writes. */
function sandbox(tasks: string, id: string, pod: string, namespace: string): void {
  Deno.mkdirSync(`${tasks}/k8s.io/${id}`);
  Deno.writeTextFileSync(
    `${tasks}/k8s.io/${id}/config.json`,
    JSON.stringify({
      annotations: {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-name": pod,
        "io.kubernetes.cri.sandbox-namespace": namespace,
      },
    }),
  );
}

Deno.test({
  name: "cni: a host-local reservation names its pod from the time it was made until it is gone",
  ignore: !isRoot,
  fn: () => {
    const n = node();
    try {
      const peers = new PeerAddresses();
      const lines: string[] = [];
      const cni = new CniReservations(peers, (l) => lines.push(l), n.root, n.tasks);
      sandbox(n.tasks, "sb1", "db-0", "shop");
      Deno.writeTextFileSync(`${n.root}/pods/10.88.0.5`, "sb1\r\neth0");
      Deno.writeTextFileSync(`${n.root}/pods/fd00:88::5`, "sb1\r\neth0");
      Deno.writeTextFileSync(`${n.root}/pods/last_reserved_ip.0`, "10.88.0.5");
      const made = Deno.statSync(`${n.root}/pods/10.88.0.5`).mtime!.getTime();
      cni.scan(made + 100);
      assert.equal(cni.size, 2);
      const p = peers.lookup("10.88.0.5", ns(made + 50));
      assert.deepEqual(p, { container: "", containerId: "sb1", image: "", pod: "db-0", namespace: "shop" });
      assert.equal(peers.lookup("fd00:88::5", ns(made + 50))?.pod, "db-0");
      assert.equal(peers.lookup("10.88.0.5", ns(made - 1000)), undefined, "not before it was reserved");
      // The pod went: its claims end at the scan that saw it; a late record of it keeps its name.
      Deno.removeSync(`${n.root}/pods/10.88.0.5`);
      Deno.removeSync(`${n.root}/pods/fd00:88::5`);
      cni.scan(made + 2000);
      assert.equal(peers.lookup("10.88.0.5", ns(made + 2500)), undefined);
      assert.equal(peers.lookup("10.88.0.5", ns(made + 1500))?.pod, "db-0");
      assert.equal(cni.size, 0);
      assert.deepEqual(lines, []);
    } finally {
      n.close();
    }
  },
});

Deno.test({
  name: "cni: reservations others could write, links, and hostile ids name nobody",
  ignore: !isRoot,
  fn: () => {
    const n = node();
    try {
      const peers = new PeerAddresses();
      const lines: string[] = [];
      const cni = new CniReservations(peers, (l) => lines.push(l), n.root, n.tasks);
      // Not root's file; a link to a root file; an id that is not one.
      Deno.writeTextFileSync(`${n.root}/pods/10.88.0.6`, "sb2\r\neth0");
      Deno.chownSync(`${n.root}/pods/10.88.0.6`, 65534, 65534);
      Deno.writeTextFileSync(`${n.root}/pods/real`, "sb3\r\neth0");
      Deno.symlinkSync(`${n.root}/pods/real`, `${n.root}/pods/10.88.0.7`);
      Deno.writeTextFileSync(`${n.root}/pods/10.88.0.8`, "sb 4; rm -rf /\r\neth0");
      cni.scan(Date.now());
      for (const a of ["10.88.0.6", "10.88.0.7", "10.88.0.8"]) {
        assert.equal(peers.lookup(a, ns(Date.now())), undefined, a);
      }
      // A network directory others may write: its files are not the plugin's word, and that is said once.
      Deno.mkdirSync(`${n.root}/open`);
      Deno.chmodSync(`${n.root}/open`, 0o777);
      Deno.writeTextFileSync(`${n.root}/open/10.88.1.9`, "sb5\r\neth0");
      cni.scan(Date.now());
      cni.scan(Date.now());
      assert.equal(peers.lookup("10.88.1.9", ns(Date.now())), undefined);
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.match(lines[0], /cni: not reading .*\/open: group or others may write it/);
    } finally {
      n.close();
    }
  },
});

Deno.test({
  name: "root files: only a regular file of root's, never through a link, at most the bound",
  ignore: !isRoot,
  fn: () => {
    const dir = Deno.makeTempDirSync();
    try {
      Deno.writeTextFileSync(`${dir}/ok`, "12345");
      assert.equal(readRootFile(`${dir}/ok`, 5), "12345");
      assert.equal(readRootFile(`${dir}/ok`, 4), undefined);
      Deno.symlinkSync(`${dir}/ok`, `${dir}/link`);
      assert.equal(readRootFile(`${dir}/link`, 100), undefined);
      Deno.chownSync(`${dir}/ok`, 65534, 65534);
      assert.equal(readRootFile(`${dir}/ok`, 100), undefined);
      assert.equal(readRootFile(dir, 100), undefined);
      assert.equal(readRootFile(`${dir}/missing`, 100), undefined);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cni: watched, a reservation and the sandbox's bundle after it are read as they appear, not at the next scan",
  ignore: !isRoot,
  fn: async () => {
    const n = node();
    const cni = new CniReservations(new PeerAddresses(), () => {}, n.root, n.tasks);
    const peers = new PeerAddresses();
    const watched = new CniReservations(peers, () => {}, n.root, n.tasks);
    const until = async (what: string, ok: () => boolean) => {
      for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(ok(), what);
    };
    try {
      watched.watch();
      cni.scan(Date.now()); // an unwatched one, to show the watch is what reads
      Deno.mkdirSync(`${n.root}/cbr0`, { mode: 0o755 }); // a network made after the start
      await new Promise((r) => setTimeout(r, 50));
      Deno.writeTextFileSync(`${n.root}/cbr0/10.88.0.9`, "sb9\r\neth0");
      const t = Date.now();
      await until("the reservation", () => peers.lookup("10.88.0.9", ns(t)) !== undefined);
      assert.equal(peers.lookup("10.88.0.9", ns(t))?.pod, "", "no bundle yet");
      assert.equal(cni.size, 0);
      sandbox(n.tasks, "sb9", "api-1", "shop");
      // The bundle's directory, then its file: a later change in the namespace (the pod's own container) reads it.
      Deno.mkdirSync(`${n.tasks}/k8s.io/app9`);
      await until("the pod", () => peers.lookup("10.88.0.9", ns(t))?.pod === "api-1");
      Deno.removeSync(`${n.root}/cbr0/10.88.0.9`);
      await until("the release", () => peers.lookup("10.88.0.9", ns(Date.now() + 10)) === undefined);
    } finally {
      watched.close();
      cni.close();
      n.close();
    }
  },
});
