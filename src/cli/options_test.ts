import assert from "node:assert/strict";
import { FLAGS, GROUPS, helpText, parseFlags, strategiesFor } from "./options.ts";
import { UsageError } from "../usage_error.ts";
import { parseDuration } from "./duration.ts";

function usageError(argv: string[]): string {
  try {
    parseFlags(argv);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e.message;
  }
  throw new Error(`${argv.join(" ")} parsed`);
}

Deno.test("Go-style and GNU-style flags mean the same", () => {
  for (
    const argv of [
      ["-output", "json"],
      ["--output", "json"],
      ["--output=json"],
      ["-output=json"],
      ["-f", "json"],
      ["-format", "json"],
    ]
  ) {
    assert.equal(parseFlags(argv).output, "json", argv.join(" "));
  }
});

Deno.test("the original's flags parse to their options", () => {
  const o = parseFlags([
    "-c",
    "my.yaml",
    "-exclude",
    "dport=53",
    "-v6=false",
    "-k8s",
    "-log_path",
    "/tmp/l",
    "-docker_runtime",
    "/run/d.sock",
    "-docker_data",
    "/d",
    "-ebpf_type",
    "1",
  ]);
  assert.deepEqual(o, {
    config: "my.yaml",
    configGiven: true,
    exclude: "dport=53",
    ipv6: false,
    k8s: true,
    logPath: "/tmp/l",
    dockerRuntime: "/run/d.sock",
    dockerData: "/d",
    strategy: "tracepoints",
  });
});

Deno.test("boolean flags take Go's =true/=false forms and --no-", () => {
  assert.equal(parseFlags(["-v6"]).ipv6, true);
  assert.equal(parseFlags(["-v6=true"]).ipv6, true);
  assert.equal(parseFlags(["--v6=0"]).ipv6, false);
  assert.equal(parseFlags(["--no-v6"]).ipv6, false);
});

Deno.test("only the flags given are set, so the config file can fill the rest", () => {
  assert.deepEqual(parseFlags([]), {});
  assert.deepEqual(parseFlags(["--count", "5"]), { count: 5 });
});

Deno.test("logfile is the original's name for log output", () => {
  assert.equal(parseFlags(["-output", "logfile"]).output, "log");
});

Deno.test("durations use Go's syntax", () => {
  assert.equal(parseFlags(["--duration", "1m30s"]).durationMs, 90_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("10"), 10_000);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("5x"), undefined);
  assert.equal(parseDuration("s"), undefined);
  assert.equal(parseDuration(""), undefined);
});

Deno.test("long durations are taken as written; absurd ones and infinite numbers are refused", () => {
  assert.equal(parseFlags(["--duration", "600h"]).durationMs, 600 * 3_600_000);
  assert.equal(parseFlags(["--stats", "600h"]).statsIntervalMs, 600 * 3_600_000);
  const refused = (args: string[], why: RegExp) =>
    assert.throws(() => parseFlags(args), (e) => e instanceof UsageError && why.test(e.message));
  refused(["--duration", `${"9".repeat(400)}h`], /^-duration: cannot parse duration/);
  refused(["--duration", "9000h"], /^-duration: '9000h' is longer than a year$/);
  refused(["--metadata-wait", "600h"], /^-metadata-wait: '600h' is longer than 1m/);
  refused(["--count", "9".repeat(400)], /^-count: '9+' is too large$/);
  refused(["--log-keep", "1e3"], /is not a whole number/);
});

Deno.test("bad flags are one line naming the problem", () => {
  assert.equal(usageError(["--bogus"]), "unknown flag '--bogus'; see --help");
  assert.equal(usageError(["-bogus=1"]), "unknown flag '-bogus'; see --help");
  assert.equal(usageError(["-output"]), "-output needs a value; see --help");
  assert.equal(
    usageError(["-output", "xml"]),
    "-output: unknown value 'xml'; choose one of " + "table, json, log, summary, otlp",
  );
  assert.equal(usageError(["-v6=maybe"]), "-v6: 'maybe' is not a boolean; use true or false");
  assert.equal(usageError(["--count", "-3"]), "-count: '-3' is not a whole number");
  assert.equal(
    usageError(["-ebpf_type", "2"]),
    "-ebpf_type: unknown value '2'; use 0 (fentry first, automatic fallback) or 1 (tracepoints)",
  );
  assert.equal(usageError(["stray"]), "unexpected argument 'stray'; see --help");
});

Deno.test("strategy choices expand to the order the loader tries", () => {
  assert.deepEqual(strategiesFor("auto"), ["fentry", "kprobe", "tp_btf", "tracepoint"]);
  assert.deepEqual(strategiesFor("tracepoints"), ["tp_btf", "tracepoint"]);
  assert.deepEqual(strategiesFor("kprobe"), ["kprobe"]);
});

Deno.test("help is grouped, one line per flag with its default, three examples, within 100 columns and lines", () => {
  const lines = helpText().split("\n");
  assert.ok(lines.length <= 100, `${lines.length} lines`);
  for (const l of lines) assert.ok(l.length <= 100, l);
  const heads = lines.filter((l) => /^[A-Z][a-z]+( [a-z]+)?:$/.test(l)).map((l) => l.slice(0, -1));
  assert.deepEqual(heads, [...GROUPS, "Examples", "Exit codes"]);
  for (const f of FLAGS) {
    const own = lines.filter((l) => new RegExp(`^  (-\\w, )?-${f.name} `).test(l));
    assert.equal(own.length, 1, f.name);
    assert.ok(own[0].includes(f.help), f.name);
  }
  assert.ok(
    lines.includes(
      "  -f, -output FORMAT       table, json, log (hourly files), summary or otlp (default table)",
    ),
  );
  assert.match(helpText(), /-metadata-wait DURATION +.* \(default 200ms\)$/m);
  assert.match(helpText(), /-events LIST +.* \(default connect\)$/m);
  const examples = lines.slice(lines.indexOf("Examples:") + 1);
  assert.equal(examples.slice(0, examples.indexOf("")).filter((l) => l.startsWith("  sudo lightmon")).length, 3);
});
