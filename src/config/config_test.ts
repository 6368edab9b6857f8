import assert from "node:assert/strict";
import { UsageError } from "../usage_error.ts";
import { parseConfig } from "./config.ts";
import { resolveOptions } from "../main.ts";

// A config.yaml as the original lightmon's users write it.
const ORIGINAL = `ipv6: false
k8s: false
format: logfile
logPath: /var/log/lightmon
docker_runtime: /var/run/docker.sock
docker_data: /var/lib/docker
exclude: 'dip="10.0.0.1" && dport=80; dip="10.0.0.1" && dport=443'
ebpfType: 0
`;

function configError(text: string): string {
  try {
    parseConfig(text, "config.yaml");
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e.message;
  }
  throw new Error("parsed");
}

Deno.test("an original config file works unchanged", () => {
  assert.deepEqual(parseConfig(ORIGINAL, "config.yaml"), {
    ipv6: false,
    k8s: false,
    output: "log",
    logPath: "/var/log/lightmon",
    dockerRuntime: "/var/run/docker.sock",
    dockerData: "/var/lib/docker",
    exclude: 'dip="10.0.0.1" && dport=80; dip="10.0.0.1" && dport=443',
    strategy: "auto",
  });
});

Deno.test("flags override the file, the file overrides defaults", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.yaml`;
  await Deno.writeTextFile(path, "format: json\nipv6: false\nexclude: dport=22\n");
  const fromFile = await resolveOptions(["-c", path], {});
  assert.equal(fromFile.output, "json");
  assert.equal(fromFile.ipv6, false);
  assert.equal(fromFile.count, 0); // default
  const flagsWin = await resolveOptions(["-c", path, "-output", "table", "-v6", "-exclude", "dport=23"], {});
  assert.equal(flagsWin.output, "table");
  assert.equal(flagsWin.ipv6, true);
  assert.equal(flagsWin.exclude, "dport=23");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a missing default config.yaml is fine; a missing -c file is an error", async () => {
  const cwd = Deno.cwd();
  const dir = Deno.makeTempDirSync();
  Deno.chdir(dir);
  try {
    assert.equal((await resolveOptions([], {})).output, "table");
    await assert.rejects(
      resolveOptions(["-c", "nope.yaml"], {}),
      /-c nope.yaml: cannot read config file \(no such file\)/,
    );
  } finally {
    Deno.chdir(cwd);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("LIGHTMON_STRATEGY picks the strategy unless a flag does", async () => {
  assert.equal((await resolveOptions(["-c", "/dev/null"], { LIGHTMON_STRATEGY: "tracepoint" })).strategy, "tracepoint");
  const flagWins = await resolveOptions(["-c", "/dev/null", "--strategy", "tp_btf"], {
    LIGHTMON_STRATEGY: "tracepoint",
  });
  assert.equal(flagWins.strategy, "tp_btf");
});

Deno.test("config errors name the file, line and key", () => {
  assert.equal(
    configError("ipv6: true\nformat: json\nbogus: 1\n"),
    "config.yaml:3: unknown key 'bogus'; known keys: events, existing, dns, strategy, ebpfType, flows, format, otlpEndpoint, logPath, logKeep, include, exclude, ipv6, k8s, docker_runtime, docker_data, metadataWait, baseline, learn, metricsAddr",
  );
  assert.equal(configError('\n\nipv6: "yes"\n'), 'config.yaml:3: ipv6: expected true or false, got "yes"');
  assert.equal(
    configError("format: [json]\n"),
    "config.yaml:1: format: expected a string or number, got a list or mapping",
  );
  assert.equal(
    configError("format: xml\n"),
    "config.yaml:1: format: unknown value 'xml'; choose one of table, json, log, summary, otlp",
  );
  assert.match(configError("ipv6: [\n"), /^config\.yaml:2: invalid YAML: /);
  assert.equal(configError("- a\n- b\n"), "config.yaml:1: expected a mapping of keys to values");
  assert.match(configError("ipv6: true\nipv6: false\n"), /^config\.yaml:2: invalid YAML: Map keys must be unique/);
});

Deno.test("an empty file or empty values keep the defaults", () => {
  assert.deepEqual(parseConfig("", "c"), {});
  assert.deepEqual(parseConfig("# only a comment\n", "c"), {});
  assert.deepEqual(parseConfig("exclude:\n", "c"), {});
});

Deno.test("a config file others could have written is refused, naming the file and why", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/config.yaml`;
  await Deno.writeTextFile(path, "exclude: dport=22\n");
  await Deno.chmod(path, 0o666);
  await assert.rejects(
    () => resolveOptions(["-c", path], {}),
    (e) =>
      e instanceof UsageError &&
      e.message ===
        `${path}: refusing the config file: group or others may write it (mode 0666); fix with chown root and chmod go-w`,
  );
  await Deno.chmod(path, 0o644);
  assert.equal((await resolveOptions(["-c", path], {})).exclude, "dport=22");
  if (Deno.uid() === 0) {
    await Deno.chown(path, 4242, 4242);
    await assert.rejects(() => resolveOptions(["-c", path], {}), /it belongs to uid 4242/);
  }
  await Deno.remove(dir, { recursive: true });
});
