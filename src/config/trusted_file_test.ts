import assert from "node:assert/strict";
import fs from "node:fs";
import { fileVersion, onReadOnlyMount, readTrustedText } from "./trusted_file.ts";
import { UsageError } from "../usage_error.ts";

const MOUNTINFO = [
  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
  "30 22 0:25 / /etc/lightmon rw,nosuid - tmpfs tmpfs rw",
  "31 30 0:26 / /etc/lightmon/baseline ro,relatime - tmpfs tmpfs rw",
  "32 22 0:27 / /srv/with\\040space ro - tmpfs tmpfs rw",
].join("\n");

Deno.test("a directory is on a read-only mount when the mount with the longest mount point over it is ro", () => {
  assert.equal(onReadOnlyMount("/etc/lightmon/baseline", MOUNTINFO), true);
  assert.equal(onReadOnlyMount("/etc/lightmon/baseline/..2026_12_03", MOUNTINFO), true);
  assert.equal(onReadOnlyMount("/etc/lightmon", MOUNTINFO), false);
  assert.equal(onReadOnlyMount("/etc/lightmon/baseline-other", MOUNTINFO), false, "a prefix of a name is not a parent");
  assert.equal(onReadOnlyMount("/srv/with space/x", MOUNTINFO), true, "octal escapes in mount points");
  assert.equal(onReadOnlyMount("/var", MOUNTINFO), false);
});

/** kubelet's layout in `dir`: the file a link into ..data, ..data a link to a timestamped directory. */
function configMap(dir: string, text: string, ts = "..2026_12_03_10_00_00.1"): void {
  Deno.mkdirSync(`${dir}/${ts}`, { mode: 0o755 });
  Deno.writeTextFileSync(`${dir}/${ts}/baseline.yaml`, text);
  Deno.chmodSync(`${dir}/${ts}/baseline.yaml`, 0o644);
  Deno.symlinkSync(ts, `${dir}/..data_tmp`);
  Deno.renameSync(`${dir}/..data_tmp`, `${dir}/..data`);
  try {
    Deno.symlinkSync("..data/baseline.yaml", `${dir}/baseline.yaml`);
  } catch { /* there from the first version */ }
}

const read = (path: string) => readTrustedText(path, { what: "baseline", maxBytes: 1 << 20 });

Deno.test("a file behind kubelet's links is read, and a swap of ..data changes what is read and its version", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    configMap(dir, "one");
    const v1 = fileVersion(`${dir}/baseline.yaml`);
    assert.equal(await read(`${dir}/baseline.yaml`), "one");
    configMap(dir, "two", "..2026_12_03_10_01_00.2");
    assert.equal(await read(`${dir}/baseline.yaml`), "two");
    assert.notEqual(fileVersion(`${dir}/baseline.yaml`), v1);
    assert.match(fileVersion(`${dir}/baseline.yaml`), /\.\.2026_12_03_10_01_00\.2\/baseline\.yaml:/);
    assert.equal(fileVersion(`${dir}/nothing`), "");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a link in the chain that another user owns, or a directory others may write on a writable mount, is refused", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    configMap(dir, "one");
    fs.lchownSync(`${dir}/..data`, 65534, 65534);
    await assert.rejects(
      read(`${dir}/baseline.yaml`),
      (e) =>
        e instanceof UsageError &&
        /refusing the baseline: the link \S+\/\.\.data: it belongs to uid 65534/.test(e.message),
    );
    fs.lchownSync(`${dir}/..data`, 0, 0);
    Deno.chmodSync(`${dir}/..2026_12_03_10_00_00.1`, 0o777);
    await assert.rejects(read(`${dir}/baseline.yaml`), (e) =>
      e instanceof UsageError &&
      /the directory \S+\.\.2026_12_03_10_00_00\.1 it is in: group or others may write it/.test(e.message));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
