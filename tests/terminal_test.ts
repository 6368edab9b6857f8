/**
 * End-to-end: what lightmon shows on a terminal. The progress line of a bounded
 * summary run, through a pseudo-terminal (util-linux `script`), and its absence
 * when stderr is a pipe.
 */
import assert from "node:assert/strict";
import { assertDetached, bpfTest, connect, LIGHTMON, Lightmon, listen } from "./harness.ts";

/** `text` read from `stream` until `pred` holds or the stream ends, within `ms`. */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  pred: (text: string) => boolean,
  ms: number,
  text = "",
): Promise<{ text: string; done: boolean }> {
  const end = Date.now() + ms;
  while (!pred(text)) {
    const left = end - Date.now();
    if (left <= 0) throw new Error(`timed out; read so far:\n${JSON.stringify(text.slice(-2000))}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      reader.read(),
      new Promise<never>((_, rej) => timer = setTimeout(() => rej(new Error(`timed out:\n${text}`)), left)),
    ]);
    clearTimeout(timer);
    if (r.done) return { text, done: true };
    text += r.value;
  }
  return { text, done: false };
}

bpfTest(
  "a bounded summary run on a terminal shows its progress in place, and erases it before the exit line",
  async () => {
    const l = listen("127.0.0.1");
    const cmd = `stty cols 120 rows 40; exec ${LIGHTMON} --duration 4s --output summary -include 'rport=${l.port}'`;
    const child = new Deno.Command("script", {
      args: ["-qfec", cmd, "/dev/null"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    try {
      ({ text } = await readUntil(reader, (t) => t.includes("lightmon: capture "), 20_000));
      await connect("127.0.0.1", l.port, { n: 5 });
      ({ text } = await readUntil(reader, (t) => /5 events, 1 flows, 0 dropped, \ds left/.test(t), 5_000, text));
      ({ text } = await readUntil(reader, () => false, 10_000, text));
    } finally {
      l.close();
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
    }
    const st = await child.status;
    assert.equal(st.code, 0, text);
    // Drawn in place: each draw returns to the line's start and erases it; the first shows nothing yet.
    // deno-lint-ignore no-control-regex -- the terminal's own escape (erase line) is what is tested
    const draws = [...text.matchAll(/\r\x1b\[K(lightmon: [^\r\n]*)/g)].map((m) => m[1]);
    assert.match(draws[0], /^lightmon: 0 events, 0 flows, 0 dropped, 4s left$/);
    assert.ok(draws.some((d) => /^lightmon: 5 events, 1 flows, 0 dropped, [1-3]s left$/.test(d)), draws.join("\n"));
    // Erased before the summary, written to the same terminal, begins.
    // deno-lint-ignore no-control-regex -- the terminal's own escape (erase line) is what is tested
    assert.match(text, /left\r\x1b\[K┌─/);
    // Never drawn again: the summary and the exit line stand on their own lines.
    const after = text.slice(text.lastIndexOf("\r\x1b[K") + 4);
    assert.doesNotMatch(after, /left/);
    assert.match(after, /\nlightmon: seen 5 emitted 5 filtered 0 dropped 0\r\n$/);
    const start = text.indexOf("lightmon: capture ");
    assert.ok(start >= 0 && !text.slice(start).split("\n")[0].includes("events,"), "the start-up line is clean");
    assert.match(text, /\/build\/connector/);
    await assertDetached();
  },
);

bpfTest("no progress line when stderr is not a terminal", async () => {
  const l = listen("127.0.0.1");
  const lm = new Lightmon(["--duration", "2s", "--output", "summary", "-include", `rport=${l.port}`]);
  try {
    await lm.ready();
    await connect("127.0.0.1", l.port, { n: 2 });
    assert.equal((await lm.exit(10_000)).code, 0, lm.stderr);
  } finally {
    l.close();
  }
  // deno-lint-ignore no-control-regex -- the terminal's own escape (erase line) is what is tested
  assert.doesNotMatch(lm.stderr, /\x1b|\r|left/);
  assert.deepEqual(lm.stderr.trim().split("\n").map((line) => line.split(" ")[1]), ["capture", "seen"]);
  await assertDetached();
});
