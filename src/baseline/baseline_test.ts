import assert from "node:assert/strict";
import { sampleEvent } from "../testdata/event.ts";
import { UsageError } from "../usage_error.ts";
import { harness } from "../testdata/stage.ts";
import { eventLine, podOwner, workloadOf } from "./flow.ts";
import { Baseline, parseRule, RuleError } from "./rules.ts";
import { loadBaseline, parseBaseline } from "./file.ts";
import { documentOf, documentText, mergeFlows, newDocument, replaceFile } from "./merge.ts";
import { BaselineStage, DriftStage, Learner } from "./stage.ts";

const host = (over = {}) =>
  sampleEvent({ container: "", containerId: "", image: "", exe: "/usr/bin/curl", dport: 443, ...over });

Deno.test("a pod's owner is its name without the generated suffixes", () => {
  assert.equal(podOwner("web-7f9c6d5b8-x2kq4"), "web"); // Deployment
  assert.equal(podOwner("web-frontend-6b4fd8c9d7-zq5ws"), "web-frontend");
  assert.equal(podOwner("fluentd-x2kq4"), "fluentd"); // DaemonSet, Job
  assert.equal(podOwner("backup-28934520-x2kq4"), "backup"); // CronJob's Job
  assert.equal(podOwner("db-0"), "db"); // StatefulSet
  assert.equal(podOwner("kube-proxy-x2kq4"), "kube-proxy");
  assert.equal(podOwner("nginx"), "nginx");
  assert.equal(podOwner("cache-proxy"), "cache-proxy"); // "proxy" has a vowel: not generated
  assert.equal(podOwner("-x2kq4"), "-x2kq4");
});

Deno.test("workloads: a pod by namespace and owner, a container by image, else its name, a host process host", () => {
  assert.equal(workloadOf(sampleEvent({ pod: "web-7f9c6d5b8-x2kq4", namespace: "shop" })), "pod shop/web");
  assert.equal(workloadOf(sampleEvent({ pod: "web-7f9c6d5b8-p8zvn", namespace: "shop" })), "pod shop/web");
  assert.equal(workloadOf(sampleEvent({ image: "busybox:latest" })), "image busybox:latest");
  assert.equal(workloadOf(sampleEvent({ image: "", container: "jolly" })), "container jolly");
  assert.equal(workloadOf(sampleEvent({ image: "", container: "" })), `container ${"a".repeat(12)}`);
  assert.equal(workloadOf(host()), "host");
});

Deno.test("flow lines: the DNS name when known, v6 in brackets, an accept by its local port", () => {
  assert.equal(eventLine(host({ dnsName: "api.example.com" })), "/usr/bin/curl -> api.example.com:443");
  assert.equal(eventLine(host({ family: 6, daddr: "fd00::1" })), "/usr/bin/curl -> [fd00::1]:443");
  assert.equal(
    eventLine(host({ direction: "inbound", exe: "/usr/sbin/sshd", sport: 22, daddr: "10.0.0.9", dport: 50123 })),
    "/usr/sbin/sshd :22 <- 10.0.0.9",
  );
  // A name that is not plain (a space, a colon) is not written into a line: the address is.
  assert.equal(eventLine(host({ dnsName: "a b.example" })), "/usr/bin/curl -> 183.2.172.17:443");
  assert.equal(eventLine(host({ exe: "", comm: "curl" })), "curl -> 183.2.172.17:443");
});

Deno.test("rule lines parse, patterns and all, and bad ones say what is wrong", () => {
  assert.deepEqual(parseRule("/usr/bin/curl -> api.example.com:443"), {
    inbound: false,
    program: "/usr/bin/curl",
    remote: "api.example.com",
    portLo: 443,
    portHi: 443,
    exact: { remote: "api.example.com" },
  });
  assert.deepEqual(parseRule("x -> [0:0::1]:80").exact, { remote: "::1" });
  assert.deepEqual(parseRule("x -> [::ffff:10.0.0.1]:80").exact, { remote: "10.0.0.1" });
  assert.deepEqual(parseRule("x -> API.Example.COM.:80").exact, { remote: "api.example.com" });
  assert.deepEqual(parseRule("* -> 10.0.0.0/8:8000-8099"), {
    inbound: false,
    program: "*",
    remote: "10.0.0.0/8",
    portLo: 8000,
    portHi: 8099,
  });
  assert.equal(parseRule("/odd -> path -> x:1").program, "/odd -> path");
  const inbound = parseRule("/usr/sbin/sshd :22 <- *");
  assert.equal(inbound.inbound, true);
  assert.equal(inbound.portLo, 22);
  const bad = (line: string, msg: RegExp) =>
    assert.throws(() => parseRule(line), (e) => e instanceof RuleError && msg.test(e.message));
  bad("curl api:443", /expected 'PROGRAM -> REMOTE:PORT'/);
  bad("curl -> api", /names the remote port/);
  bad("curl -> api:0", /'0' is not a port/);
  bad("curl -> api:90-80", /'90-80' is not a port/);
  bad("curl -> api:http", /'http' is not a port/);
  bad("sshd <- 10.0.0.1", /names its local port/);
  bad(" -> api:1", /program is missing/);
  bad("curl -> a:b:c/1:1", /not a DNS name/);
});

async function baselineOf(text: string): Promise<Baseline> {
  const b = new Baseline();
  await parseBaseline(text, "b.yaml", b);
  return b;
}

Deno.test("a learned flow covers its own events and no other flow", async () => {
  const b = await baselineOf(
    `lightmon-baseline: 1\nworkloads:\n  host:\n    - /usr/bin/curl -> api.example.com:443\n    - /usr/bin/curl -> 10.9.9.9:80\n`,
  );
  assert.equal(b.covers(host({ dnsName: "api.example.com", daddr: "1.2.3.4" })), true);
  assert.equal(b.covers(host({ dnsName: "api.example.com", daddr: "5.6.7.8" })), true); // a new address, same name
  assert.equal(b.covers(host({ dnsName: "api.example.com", dport: 80 })), false);
  assert.equal(b.covers(host({ dnsName: "api.example.com", exe: "/usr/bin/wget" })), false);
  assert.equal(b.covers(host({ dnsName: "api.example.com", direction: "inbound", sport: 443 })), false);
  assert.equal(b.covers(host({ dnsName: "api.example.com", image: "x", containerId: "c".repeat(64) })), false);
  assert.equal(b.covers(host({ dnsName: "evil.example.com" })), false);
  // Learned by address: covers the address whatever name it has now.
  assert.equal(b.covers(host({ daddr: "10.9.9.9", dport: 80 })), true);
  assert.equal(b.covers(host({ daddr: "10.9.9.9", dport: 80, dnsName: "nine.example.com" })), true);
  assert.equal(b.covers(host({ daddr: "10.9.9.10", dport: 80 })), false);
});

Deno.test("hand-written globs, CIDRs, ranges and stars cover what they say and nothing more", async () => {
  const b = await baselineOf(`lightmon-baseline: 1
workloads:
  host:
    - "* -> *.amazonaws.com:443"
    - /usr/bin/psql -> 10.0.0.0/8:5432
    - /opt/app/* -> [fd00::/8]:8000-8099
    - /usr/sbin/sshd :22 <- 192.168.0.0/16
  "pod shop/*":
    - "* -> db.shop.svc.cluster.local:*"
`);
  assert.equal(b.covers(host({ dnsName: "s3.eu-west-1.amazonaws.com", exe: "/bin/anything" })), true);
  assert.equal(b.covers(host({ dnsName: "amazonaws.com.evil.org" })), false);
  assert.equal(b.covers(host({ dnsName: "s3.amazonaws.com", dport: 80 })), false);
  assert.equal(b.covers(host({ daddr: "52.1.2.3" })), false); // no name: the glob cannot vouch for it
  assert.equal(b.covers(host({ exe: "/usr/bin/psql", daddr: "10.200.0.1", dport: 5432 })), true);
  assert.equal(b.covers(host({ exe: "/usr/bin/psql", daddr: "11.0.0.1", dport: 5432 })), false);
  assert.equal(b.covers(host({ exe: "/usr/bin/psql", daddr: "10.200.0.1", dport: 5433 })), false);
  assert.equal(b.covers(host({ exe: "/opt/app/bin/x", family: 6, daddr: "fd12::7", dport: 8050 })), true);
  assert.equal(b.covers(host({ exe: "/opt/app/bin/x", family: 6, daddr: "fe80::7", dport: 8050 })), false);
  assert.equal(b.covers(host({ exe: "/opt/app/bin/x", family: 6, daddr: "fd12::7", dport: 8100 })), false);
  const ssh = { exe: "/usr/sbin/sshd", direction: "inbound" as const, sport: 22 };
  assert.equal(b.covers(host({ ...ssh, daddr: "192.168.4.4" })), true);
  assert.equal(b.covers(host({ ...ssh, daddr: "10.0.0.4" })), false);
  assert.equal(b.covers(host({ ...ssh, daddr: "192.168.4.4", direction: "outbound", dport: 22 })), false);
  const pod = (p: string) => sampleEvent({ pod: p, namespace: "shop", dnsName: "db.shop.svc.cluster.local" });
  assert.equal(b.covers(pod("web-7f9c6d5b8-x2kq4")), true);
  assert.equal(
    b.covers(sampleEvent({ pod: "web-7f9c6d5b8-x2kq4", namespace: "other", dnsName: "db.shop.svc.cluster.local" })),
    false,
  );
  // Verdicts are remembered: asking again gives the same answers.
  assert.equal(b.covers(pod("web-7f9c6d5b8-x2kq4")), true);
  assert.equal(b.covers(host({ exe: "/usr/bin/psql", daddr: "11.0.0.1", dport: 5432 })), false);
});

async function usageError(text: string, msg: string | RegExp): Promise<void> {
  await assert.rejects(() => parseBaseline(text, "b.yaml", new Baseline()), (e) => {
    assert.ok(e instanceof UsageError);
    if (typeof msg === "string") assert.equal(e.message, msg);
    else assert.match(e.message, msg);
    return true;
  });
}

Deno.test("an invalid baseline file is an error naming the line", async () => {
  await usageError(
    "lightmon-baseline: 1\nworkloads:\n  host:\n    - /usr/bin/curl -> api:443\n    - /usr/bin/curl -> api:https\n",
    "b.yaml:5: 'https' is not a port (1-65535), a range (8000-8099) or *: '/usr/bin/curl -> api:https'",
  );
  await usageError("lightmon-baseline: 2\n", "b.yaml:1: lightmon-baseline is 2; this lightmon reads version 1");
  await usageError(
    "lightmon-baseline: 1\nflows: []\n",
    "b.yaml:2: unknown key 'flows'; known keys: lightmon-baseline, workloads",
  );
  await usageError(
    "workloads:\n  host:\n    - /x -> y:1\n    - {program: curl}\n",
    "b.yaml:4: expected a flow line ('PROGRAM -> REMOTE:PORT'), got object",
  );
  await usageError("workloads:\n  host: curl -> api:443\n", "b.yaml:2: host: expected a list of flow lines");
  await usageError("- a\n", "b.yaml:1: expected a mapping with 'lightmon-baseline: 1' and 'workloads'");
  await usageError(
    "workloads:\n  host:\n    - * -> x:1\n",
    /^b\.yaml:3: invalid YAML: .*\(a baseline takes no YAML aliases or anchors: quote a line or key that starts with \* or &\)$/,
  );
  await usageError("workloads:\n  host: []\n  host: []\n", /^b\.yaml:3: invalid YAML: duplicated mapping key/);
  // Empty files and empty lists are baselines with nothing in them.
  assert.equal(await parseBaseline("", "b.yaml", new Baseline()), 0);
  assert.equal(await parseBaseline("# nothing yet\n", "b.yaml", new Baseline()), 0);
  assert.equal(await parseBaseline("workloads:\n  host:\n", "b.yaml", new Baseline()), 0);
  // A key named like a prototype's is data.
  assert.equal(await parseBaseline("workloads:\n  __proto__:\n    - /x -> y:1\n", "b.yaml", new Baseline()), 1);
});

Deno.test("merged flows are sorted by workload and line, comments stay, and nothing new changes nothing", () => {
  const doc = newDocument();
  mergeFlows(doc, new Map([["image b", ["/z -> b:1", "/a -> b:2"]], ["host", ["/bin/x -> [::1]:80"]]]));
  const text = documentText(doc);
  assert.match(text, /^# lightmon baseline:/);
  assert.ok(
    text.endsWith(
      "lightmon-baseline: 1\nworkloads:\n  host:\n    - /bin/x -> [::1]:80\n  image b:\n    - /a -> b:2\n    - /z -> b:1\n",
    ),
    text,
  );
  const edited = text.replace("  image b:\n", "  # reviewed by ops\n  image b:\n");
  const again = documentOf(edited);
  mergeFlows(again, new Map([["image b", ["/m -> b:3", "/a -> b:2"]]]));
  assert.ok(
    documentText(again).endsWith(
      "  # reviewed by ops\n  image b:\n    - /a -> b:2\n    - /m -> b:3\n    - /z -> b:1\n",
    ),
  );
  const stable = documentOf(documentText(again));
  assert.equal(documentText(stable), documentText(again));
});

Deno.test("learning writes a file that covers what was learned; learning it again changes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/baseline.yaml`;
    const events = [
      host({ dnsName: "api.example.com" }),
      host({ dnsName: "api.example.com", daddr: "9.9.9.9" }), // the same flow
      host({ direction: "inbound", exe: "/usr/sbin/sshd", sport: 22, daddr: "10.0.0.9" }),
      sampleEvent({ pod: "web-7f9c6d5b8-x2kq4", namespace: "shop" }),
      sampleEvent({ event: "dns", query: "x" }), // not a flow
    ];
    const learn = async () => {
      const l = await Learner.open(path);
      for (const e of events) if (e.event !== "dns") l.observe(e);
      const pending = l.pending;
      await l.save();
      return pending;
    };
    assert.equal(await learn(), 3);
    const first = await Deno.readTextFile(path);
    const info = await Deno.stat(path);
    assert.equal(info.mode! & 0o777, 0o644);
    assert.equal(await learn(), 0);
    assert.equal(await Deno.readTextFile(path), first);
    assert.equal((await Deno.stat(path)).mtime?.getTime(), info.mtime?.getTime());
    const b = new Baseline();
    const file = await loadBaseline(path, b, "--baseline", false);
    assert.equal(file?.flows, 3);
    for (const e of events.slice(0, 4)) assert.equal(b.covers(e), true);
    assert.equal(b.covers(host({ dnsName: "other.example.com" })), false);
    // Two saves at once (a periodic one and the last): one after the other, each flow written once.
    const l = await Learner.open(path);
    l.observe(host({ dnsName: "two.example.com" }));
    const saves = [l.save(), l.save()];
    l.observe(host({ dnsName: "three.example.com" }));
    await Promise.all(saves);
    assert.equal(l.saved, 2);
    const text = await Deno.readTextFile(path);
    assert.equal(text.split("two.example.com").length, 2);
    assert.equal(text.split("three.example.com").length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("saving replaces a link at the path instead of writing through it, and merges another writer's edits", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/baseline.yaml`;
    const target = `${dir}/elsewhere`;
    await Deno.writeTextFile(target, "lightmon-baseline: 1\n");
    await Deno.symlink(target, path);
    const l = await Learner.open(path);
    l.observe(host({ dnsName: "one.example.com" }));
    // Someone edits the file meanwhile: the save reads their version and merges into it.
    await Deno.remove(path);
    await Deno.writeTextFile(path, "# theirs\nlightmon-baseline: 1\nworkloads:\n  host:\n    - /x -> y:1\n");
    await l.save();
    assert.equal(await Deno.readTextFile(target), "lightmon-baseline: 1\n");
    assert.equal((await Deno.lstat(path)).isSymlink, false);
    const saved = await Deno.readTextFile(path);
    assert.match(saved, /^# theirs\n/);
    assert.ok(saved.endsWith("    - /usr/bin/curl -> one.example.com:443\n    - /x -> y:1\n"), saved);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["baseline.yaml", "elsewhere"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a baseline others may write is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/b.yaml`;
    await Deno.writeTextFile(path, "lightmon-baseline: 1\n");
    await Deno.chmod(path, 0o666);
    await assert.rejects(
      () => loadBaseline(path, new Baseline(), "--baseline", false),
      new UsageError(
        `${path}: refusing the baseline: group or others may write it (mode 0666); fix with chown root and chmod go-w`,
      ),
    );
    await assert.rejects(
      () => loadBaseline(`${dir}/missing.yaml`, new Baseline(), "--baseline", false),
      new UsageError(`--baseline ${dir}/missing.yaml: cannot read the baseline (no such file)`),
    );
    assert.equal(await loadBaseline(`${dir}/missing.yaml`, new Baseline(), "--learn", true), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a baseline with YAML aliases is refused with its line, before anything is expanded (an alias bomb)", async () => {
  const lines = Array.from({ length: 3000 }, (_, i) => `    - /bin/x${i} -> a.example.com:443`).join("\n");
  let text = `lightmon-baseline: 1\nworkloads:\n  base: &l\n${lines}\n`;
  for (let i = 0; i < 30_000; i++) text += `  w${i}: *l\n`;
  const b = new Baseline();
  await assert.rejects(
    () => parseBaseline(text, "bomb.yaml", b),
    new UsageError(
      "bomb.yaml:3004: invalid YAML: aliases exceeded maxAliases (0) (a baseline takes no YAML aliases or anchors: " +
        "quote a line or key that starts with * or &)",
    ),
  );
});

Deno.test("replacing the file sets owner and mode on its descriptor: a link planted at the temporary name is never followed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A root file the directory's owner would like to own: /etc's, in the attack.
    const victim = `${dir}/victim`;
    await Deno.writeTextFile(victim, "secret\n");
    await Deno.chmod(victim, 0o600);
    const path = `${dir}/baseline.yaml`;
    // Between the write and the rename, the directory's owner moves the new file away and plants a link.
    const plant = (tmp: string) => {
      Deno.renameSync(tmp, `${dir}/stolen`);
      Deno.symlinkSync(victim, tmp);
    };
    assert.throws(
      () => replaceFile(path, "lightmon-baseline: 1\n", 0o644, { uid: 65534, gid: 65534 }, { beforeRename: plant }),
      /was replaced by someone else/,
    );
    const v = await Deno.stat(victim);
    assert.deepEqual([v.uid, v.mode! & 0o777], [0, 0o600]);
    // What was written and given away is the file lightmon created, and only that.
    const stolen = await Deno.lstat(`${dir}/stolen`);
    assert.deepEqual([stolen.isFile, stolen.uid, stolen.mode! & 0o777], [true, 65534, 0o644]);
    // Undisturbed, the file is replaced with the owner and mode asked for.
    replaceFile(path, "lightmon-baseline: 1\n", 0o640, { uid: 65534, gid: 65534 });
    const done = await Deno.lstat(path);
    assert.deepEqual([done.isFile, done.uid, done.gid, done.mode! & 0o777], [true, 65534, 65534, 0o640]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a learn file is not written in a directory another user owns, nor one others may write unless sticky and root's", async () => {
  const dir = await Deno.makeTempDir();
  try {
    Deno.mkdirSync(`${dir}/theirs`);
    Deno.chownSync(`${dir}/theirs`, 65534, 65534);
    assert.throws(
      () => replaceFile(`${dir}/theirs/b.yaml`, "x", 0o644),
      /its directory .*theirs: it belongs to uid 65534/,
    );
    Deno.mkdirSync(`${dir}/open`);
    Deno.chmodSync(`${dir}/open`, 0o777);
    assert.throws(
      () => replaceFile(`${dir}/open/b.yaml`, "x", 0o644),
      /group or others may write it \(mode 0777\) and it is not a sticky directory of root's/,
    );
    Deno.chmodSync(`${dir}/open`, 0o1777);
    replaceFile(`${dir}/open/b.yaml`, "x", 0o644);
    assert.equal(Deno.readTextFileSync(`${dir}/open/b.yaml`), "x");
    // A baseline read from such a directory is refused the same way.
    Deno.writeTextFileSync(`${dir}/theirs/b.yaml`, "lightmon-baseline: 1\n");
    await assert.rejects(
      () => loadBaseline(`${dir}/theirs/b.yaml`, new Baseline(), "--baseline", false),
      /refusing the baseline: its directory .*theirs: it belongs to uid 65534/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the stages mark events, count novel flows and connections by status, and say so at the end", async () => {
  const b = await baselineOf("workloads:\n  host:\n    - /usr/bin/curl -> api.example.com:443\n");
  const drift = new DriftStage({ baselinePath: "b.yaml" });
  const events = [
    host({ dnsName: "api.example.com" }),
    host({ dnsName: "new.example.com" }),
    host({ dnsName: "new.example.com", status: "refused" }),
    host({ dnsName: "new.example.com", event: "close", status: "closed" }),
    sampleEvent({ event: "dns", query: "x" }),
  ];
  const mark = new BaselineStage(b);
  const h = harness(drift);
  mark.connect((e) => drift.push(e), { log: () => {}, stop: () => {}, flushSoon: () => {} });
  for (const e of events) mark.push(e);
  drift.close();
  await drift.settle(1000);
  assert.deepEqual(h.out.map((e) => e.novel), [false, true, true, true, undefined]);
  assert.equal(drift.novelFlows, 1);
  assert.deepEqual([...drift.novelByStatus], [["established", 1], ["refused", 1]]);
  assert.deepEqual(h.logs, ["lightmon: baseline b.yaml: 1 novel flow in 3 events"]);
});

Deno.test("a flow to a local container is its workload's: a new address of it is the same flow", () => {
  const db = { container: "db-1", containerId: "d".repeat(64), image: "postgres:16", pod: "", namespace: "" };
  const toDb = (daddr: string, peer = db) => host({ exe: "/app/web", daddr, dport: 5432, dnsName: "db", peer });
  assert.equal(eventLine(toDb("172.17.0.5")), "/app/web -> image postgres:16:5432");
  const api = { ...db, containerId: "e".repeat(64), image: "", pod: "api-7f9c6d5b8-x2kq4", namespace: "shop" };
  assert.equal(
    eventLine(host({ direction: "inbound", exe: "/usr/sbin/nginx", sport: 80, peer: api })),
    "/usr/sbin/nginx :80 <- pod shop/api",
  );
  assert.deepEqual(parseRule("/app/web -> image postgres:16:5432"), {
    inbound: false,
    program: "/app/web",
    remote: "image postgres:16",
    portLo: 5432,
    portHi: 5432,
    exact: { remote: "image postgres:16" },
  });
  assert.throws(() => parseRule("/app/web -> image a b:5432"), /a workload's name has no spaces/);
  const rules = new Baseline();
  rules.add("host", parseRule("/app/web -> image postgres:16:5432"));
  rules.add("host", parseRule("/app/web -> pod shop/a*:8080"));
  // The database restarted with another address: still covered; an address it never had, without it, is not.
  assert.equal(rules.covers(toDb("172.17.0.9")), true);
  assert.equal(rules.covers(host({ exe: "/app/web", daddr: "172.17.0.9", dport: 5432 })), false);
  assert.equal(rules.covers(toDb("172.17.0.9", { ...db, image: "mysql:8" })), false);
  assert.equal(rules.covers(host({ exe: "/app/web", dport: 8080, peer: api })), true, "the glob names the pod");
  assert.equal(rules.covers(host({ exe: "/app/web", dport: 8080, peer: { ...api, pod: "billing-x2kq4" } })), false);
  // Learned, it is written by workload, and a baseline of it covers the flow.
  const learned = new Baseline();
  const line = eventLine(toDb("172.17.0.5"));
  learned.add("host", parseRule(line));
  assert.equal(learned.covers(toDb("10.1.2.3")), true);
  assert.equal(learned.coversRule("host", parseRule(line)), true);
});
