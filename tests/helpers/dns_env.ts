/**
 * What the DNS end-to-end tests stand on: a network namespace with its own
 * resolv.conf, Debian's dnsmasq serving names in it, a client that resolves a name
 * with getaddrinfo and connects, and child processes ended by their pid.
 * @module
 */
import assert from "node:assert/strict";
import { CONNECTOR, ROOT, run } from "../harness.ts";

const DENO = Deno.execPath();
const dec = new TextDecoder();

/** A child process and the first line it printed. */
export async function spawn(cmd: string, args: string[]): Promise<{ child: Deno.ChildProcess; first: string }> {
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value);
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { child, first: text.split("\n")[0] };
}

/** End a child this test started, by its pid, and wait for it. */
export async function end(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM"); // ours, by its pid
  } catch { /* gone */ }
  await child.status;
}

/** dnsmasq serving `hosts` (and CNAMEs) on `address`:53, in a netns or the host's. */
export async function dnsmasq(
  address: string,
  hosts: string,
  opts: { netns?: string; ttl?: number; cnames?: string[]; local?: string } = {},
): Promise<{ child: Deno.ChildProcess; hostsFile: string }> {
  const hostsFile = await Deno.makeTempFile({ prefix: "lightmon-hosts-" });
  await Deno.writeTextFile(hostsFile, hosts);
  const args = [
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--no-resolv",
    "--no-hosts",
    `--addn-hosts=${hostsFile}`,
    `--listen-address=${address}`,
    "--bind-interfaces",
    "--port=53",
    `--local-ttl=${opts.ttl ?? 60}`,
    "--user=root",
    "--pid-file=",
    ...(opts.cnames ?? []).map((c) => `--cname=${c}`),
    // Names of this domain it does not have are NXDOMAIN, not forwarded.
    ...(opts.local ? [`--local=/${opts.local}/`] : []),
  ];
  const child = opts.netns
    ? new Deno.Command("ip", { args: ["netns", "exec", opts.netns, "dnsmasq", ...args], stderr: "null" }).spawn()
    : new Deno.Command("dnsmasq", { args, stderr: "null" }).spawn();
  // Ready when it answers on its port (TCP, which it also serves).
  const end = Date.now() + 5000;
  for (;;) {
    const probe = opts.netns
      ? await new Deno.Command("ip", {
        args: ["netns", "exec", opts.netns, CONNECTOR, address, "53"],
        stdout: "piped",
      }).output()
      : await new Deno.Command(CONNECTOR, { args: [address, "53"], stdout: "piped" }).output();
    if (dec.decode(probe.stdout).includes('"established"')) break;
    if (Date.now() > end) throw new Error("dnsmasq did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, hostsFile };
}

/** A network namespace with loopback up and a resolv.conf naming 127.0.0.1, removed by `close`. */
export async function netns(): Promise<{ name: string; close: () => Promise<void> }> {
  const name = `lmdns${Deno.pid}${Math.random().toString(36).slice(2, 6)}`;
  await run("ip", ["netns", "add", name]);
  await run("ip", ["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
  // `ip netns exec` bind-mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf.
  await Deno.mkdir(`/etc/netns/${name}`, { recursive: true });
  await Deno.writeTextFile(`/etc/netns/${name}/resolv.conf`, "nameserver 127.0.0.1\noptions attempts:2 timeout:1\n");
  return {
    name,
    close: async () => {
      await run("ip", ["netns", "del", name]).catch(() => "");
      await Deno.remove(`/etc/netns/${name}`, { recursive: true }).catch(() => {});
    },
  };
}

/** Resolve `name` with getaddrinfo inside `ns` and connect to `port`: the client's ground truth. */
export async function resolveConnect(
  ns: string,
  name: string,
  port: number,
): Promise<{ pid: number; sport: number; address: string }> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", ns, DENO, "run", "-A", `${ROOT}tests/helpers/resolve_connect.ts`, name, String(port)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, dec.decode(out.stderr));
  return JSON.parse(dec.decode(out.stdout));
}
