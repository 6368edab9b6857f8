import assert from "node:assert/strict";
import { sampleEvent, sampleFlow } from "../testdata/event.ts";
import { logFileName, logLine, prepareLogDir, RotatingLog } from "./logfile.ts";

Deno.test("log lines carry the original's keys, spelling and value types", () => {
  const line = JSON.parse(logLine(sampleEvent()));
  assert.deepEqual(Object.keys(line), [
    "conatiner",
    "dip",
    "dport",
    "ipv6",
    "level",
    "msg",
    "pid",
    "procArgs",
    "procPath",
    "sip",
    "sport",
    "time",
    "user",
  ]);
  assert.equal(line.conatiner, "dreamy_carson");
  assert.equal(line.dip, "183.2.172.17");
  assert.equal(line.dport, "443");
  assert.equal(line.ipv6, 0);
  assert.equal(line.level, "info");
  assert.equal(line.msg, "");
  assert.equal(line.pid, "501750");
  assert.equal(line.procArgs, "wget www.example.com");
  assert.equal(line.procPath, "/usr/bin/busybox");
  assert.equal(line.sip, "10.1.8.14");
  assert.equal(line.sport, "7825");
  assert.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/);
  assert.equal(line.user, "root");
  assert.equal(JSON.parse(logLine(sampleEvent({ family: 6, daddr: "::1" }))).ipv6, 1);
});

Deno.test("a hostile process name stays inert in the log", () => {
  const line = logLine(sampleEvent({ exe: "", comm: "x\x1b[2J\u009b" }));
  assert.ok(!line.includes("\x1b") && !line.includes("\u009b"));
  assert.equal(JSON.parse(line).procPath, "x\x1b[2J\u009b");
});

Deno.test("files are named by the hour", () => {
  const t = new Date(2025, 3, 17, 14, 1, 48).getTime();
  assert.equal(logFileName(t), "lightmon.log.2025041714" + "00");
});

Deno.test("rotation starts a new file each hour and keeps the newest N, mode 0640", async () => {
  const dir = await Deno.makeTempDir();
  let now = new Date(2025, 3, 17, 10, 30).getTime();
  const log = new RotatingLog(`${dir}/logs`, 3, () => {}, () => now);
  for (let h = 0; h < 5; h++) {
    log.write([`line ${h}a`, `line ${h}b`]);
    now += 3_600_000;
  }
  log.close();
  const names = [...Deno.readDirSync(`${dir}/logs`)].map((d) => d.name).sort();
  assert.deepEqual(names, ["lightmon.log.202504171200", "lightmon.log.202504171300", "lightmon.log.202504171400"]);
  assert.equal(Deno.readTextFileSync(`${dir}/logs/lightmon.log.202504171400`), "line 4a\nline 4b\n");
  assert.equal(Deno.statSync(`${dir}/logs/lightmon.log.202504171400`).mode! & 0o777, 0o640);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a removed directory is reported once and writing resumes in a new one", async () => {
  const dir = await Deno.makeTempDir();
  const said: string[] = [];
  let now = Date.now();
  const log = new RotatingLog(`${dir}/logs`, 8, (l) => said.push(l), () => now);
  log.write(["one"]);
  await Deno.remove(`${dir}/logs`, { recursive: true });
  now += 5000; // past the existence check interval
  log.write(["two"]);
  log.close();
  const files = [...Deno.readDirSync(`${dir}/logs`)];
  assert.equal(files.length, 1);
  assert.equal(Deno.readTextFileSync(`${dir}/logs/${files[0].name}`), "two\n");
  assert.deepEqual(said, []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an unwritable directory drops events with one line, then recovers with a count", async () => {
  const dir = await Deno.makeTempDir();
  const said: string[] = [];
  Deno.writeTextFileSync(`${dir}/blocker`, ""); // a file where the directory should be
  const log = new RotatingLog(`${dir}/blocker`, 8, (l) => said.push(l));
  log.write(["a"]);
  log.write(["b", "c"]);
  assert.equal(said.length, 1);
  assert.match(
    said[0],
    /^lightmon: log: cannot write .*blocker\/lightmon\.log\.\d{12} \(.*\); dropping events until it can$/,
  );
  Deno.removeSync(`${dir}/blocker`);
  log.write(["d"]);
  assert.equal(said.length, 2);
  assert.match(said[1], /writing .* again; 3 events were dropped$/);
  log.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("after the clock steps back past -log-keep hours, the file being written is kept", async () => {
  const dir = await Deno.makeTempDir();
  let now = new Date(2025, 3, 17, 14, 5).getTime();
  const log = new RotatingLog(dir, 2, () => {}, () => now);
  log.write(["14:05"]);
  now += 3_600_000;
  log.write(["15:05"]);
  now -= 10 * 3_600_000; // NTP steps the clock back ten hours
  log.write(["05:05 a"]);
  log.write(["05:05 b"]);
  log.close();
  const names = [...Deno.readDirSync(dir)].map((d) => d.name).sort();
  assert.deepEqual(names, ["lightmon.log.202504170500", "lightmon.log.202504171500"]);
  assert.equal(Deno.readTextFileSync(`${dir}/lightmon.log.202504170500`), "05:05 a\n05:05 b\n");
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "a planted symlink, FIFO or foreign file under the log name is never written through: the next name is written",
  ignore: Deno.uid() !== 0, // needs chown to play the other user; CI runs as root
}, async () => {
  const dir = await Deno.makeTempDir();
  Deno.chmodSync(dir, 0o1777); // a sticky, world-writable directory such as /tmp
  const victim = `${dir}/victim`;
  Deno.writeTextFileSync(victim, "precious\n");
  const now = new Date(2025, 3, 17, 10, 30).getTime();
  const name = `${dir}/${logFileName(now)}`;
  const cases: [string, () => void][] = [
    ["symlink", () => {
      Deno.symlinkSync(victim, name);
      Deno.chownSync(name, 65534, 65534);
    }],
    ["fifo", () => {
      new Deno.Command("mkfifo", { args: [name] }).outputSync();
      Deno.chownSync(name, 65534, 65534);
    }],
    ["foreign file", () => {
      Deno.writeTextFileSync(name, "theirs\n");
      Deno.chownSync(name, 65534, 65534);
    }],
  ];
  try {
    for (const [what, plant] of cases) {
      plant();
      const said: string[] = [];
      const log = new RotatingLog(dir, 8, (l) => said.push(l), () => now);
      log.write(["an event"]); // returns at once: a FIFO must not block the open
      log.close();
      assert.equal(said.length, 2, what);
      assert.match(said[1], /^lightmon: log: leaving 1 file\(s\) in \S+ named like logs that are not lightmon's/, what);
      assert.match(
        said[0],
        new RegExp(`^lightmon: log: writing ${name}\\.1 instead \\(${name} is .*, not lightmon's\\)$`),
        what,
      );
      assert.equal(log.droppedTotal, 0, what);
      assert.equal(Deno.readTextFileSync(`${name}.1`), "an event\n", what);
      assert.equal(Deno.readTextFileSync(victim), "precious\n", what);
      Deno.removeSync(name);
      Deno.removeSync(`${name}.1`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "pruning deletes only lightmon's own old logs, never files others named like them, and says so",
  ignore: Deno.uid() !== 0,
}, async () => {
  const dir = await Deno.makeTempDir();
  Deno.chmodSync(dir, 0o1777);
  try {
    const hour = (h: number) => new Date(2025, 3, 17, h, 30).getTime();
    for (const h of [1, 2, 3]) Deno.writeTextFileSync(`${dir}/${logFileName(hour(h))}`, "ours\n");
    // nobody's: named as the oldest logs would be, to have root delete them (or, with a link, something else).
    Deno.writeTextFileSync(`${dir}/lightmon.log.200001010000`, "theirs\n");
    Deno.chownSync(`${dir}/lightmon.log.200001010000`, 65534, 65534);
    Deno.symlinkSync("/etc/passwd", `${dir}/lightmon.log.200001010100`);
    const said: string[] = [];
    const log = new RotatingLog(dir, 2, (l) => said.push(l), () => hour(4));
    log.write(["x"]);
    log.close();
    const left = [...Deno.readDirSync(dir)].map((d) => d.name).sort();
    assert.deepEqual(left, [
      "lightmon.log.200001010000",
      "lightmon.log.200001010100",
      logFileName(hour(3)),
      logFileName(hour(4)),
    ]);
    assert.equal(said.length, 1);
    assert.match(said[0], /^lightmon: log: leaving 2 file\(s\) in \S+ named like logs that are not lightmon's/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an existing log file of ours is appended to with its mode forced to 0640", async () => {
  const dir = await Deno.makeTempDir();
  const now = new Date(2025, 3, 17, 10, 30).getTime();
  const name = `${dir}/${logFileName(now)}`;
  Deno.writeTextFileSync(name, "before\n", { mode: 0o666 });
  Deno.chmodSync(name, 0o666);
  const log = new RotatingLog(dir, 8, () => {}, () => now);
  log.write(["after"]);
  log.close();
  assert.equal(Deno.readTextFileSync(name), "before\nafter\n");
  assert.equal(Deno.statSync(name).mode! & 0o777, 0o640);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a log directory others can write is refused unless sticky; a symlinked one is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    Deno.mkdirSync(`${dir}/open`);
    Deno.chmodSync(`${dir}/open`, 0o777);
    assert.throws(
      () => prepareLogDir(`${dir}/open`),
      /-log_path .*open: refusing .*others may write it \(mode 0777\) and it is not a sticky directory of root's/,
    );
    Deno.chmodSync(`${dir}/open`, 0o1777);
    prepareLogDir(`${dir}/open`);
    Deno.symlinkSync(`${dir}/open`, `${dir}/link`);
    assert.throws(() => prepareLogDir(`${dir}/link`), /it is a symlink/);
    prepareLogDir(`${dir}/new/logs`); // created, 0750
    assert.equal(Deno.statSync(`${dir}/new/logs`).mode! & 0o777, 0o750);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("log lines: a plain connect keeps the original's keys only; tracked and close records add theirs", () => {
  const plain = Object.keys(JSON.parse(logLine(sampleEvent())));
  assert.ok(!plain.includes("event") && !plain.includes("durationMs"), plain.join());
  const close = JSON.parse(
    logLine(
      sampleEvent({
        event: "close",
        connId: 9,
        status: "closed",
        durationMs: 21,
        bytesSent: 1048576,
        bytesReceived: 3,
        closedBy: "remote",
      }),
    ),
  );
  assert.equal(close.event, "close");
  assert.equal(close.connId, "9");
  assert.equal(close.direction, "outbound");
  assert.equal(close.durationMs, 21);
  assert.equal(close.bytesSent, 1048576);
  assert.equal(close.closedBy, "remote");
  assert.equal(close.existing, 0);
  assert.deepEqual(Object.keys(close), [...Object.keys(close)].sort());
  // A flow record says it is one, and what it counted.
  const flow = JSON.parse(logLine(sampleEvent({
    event: "flow",
    bytesSent: 30,
    flow: sampleFlow({ connections: 3, statuses: [["established", 2], ["refused", 1]], closes: 2, processes: 2 }),
  })));
  assert.deepEqual(
    [flow.event, flow.direction, flow.connections, flow.statuses, flow.closes, flow.processes, flow.bytesSent],
    ["flow", "outbound", 3, "established=2 refused=1", 2, 2, 30],
  );
  assert.equal(flow.flowCause, "interval");
  assert.ok(!("folded" in flow) && !("connId" in flow), JSON.stringify(flow));
});

Deno.test("reopen (SIGHUP) starts a new file where logrotate moved the old one away", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const now = new Date(2025, 3, 17, 10, 30).getTime();
    const log = new RotatingLog(dir, 8, () => {}, () => now);
    log.write(["one"]);
    Deno.renameSync(log.path, `${dir}/rotated`);
    log.reopen();
    log.write(["two"]);
    log.close();
    assert.equal(Deno.readTextFileSync(`${dir}/rotated`), "one\n");
    assert.equal(Deno.readTextFileSync(`${dir}/${logFileName(now)}`), "two\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
