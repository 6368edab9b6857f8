/**
 * The C <-> TypeScript contract: every offset and size the decoder uses must match
 * the compiled object's BTF.
 */
import assert from "node:assert/strict";
import {
  CGROUP_KEY,
  CGROUP_KEY_SIZE,
  CGROUP_NAMES,
  CGROUP_NAMES_SIZE,
  CONFIG,
  CONFIG_SIZE,
  CONN,
  CONN_SIZE,
  DNS,
  DNS_QUERY,
  DNS_QUERY_SIZE,
  DNS_SIZE,
  EXEC,
  EXEC_SIZE,
  EXIT,
  EXIT_SIZE,
  FLOW_KEY,
  FLOW_KEY_SIZE,
  FLOW_STATS,
  FLOW_STATS_SIZE,
  FORK,
  FORK_SIZE,
} from "../src/capture/layout.ts";
import { OBJECT } from "./harness.ts";
import { BpfObject } from "../ffi/libbpf.ts";
import { MAX_INCLUDED_PORTS } from "../src/capture/loader.ts";

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
}

async function btf(): Promise<Map<number, BtfType>> {
  const out = await new Deno.Command("bpftool", { args: ["-j", "btf", "dump", "file", OBJECT] }).output();
  assert.ok(out.success, `bpftool btf dump: ${new TextDecoder().decode(out.stderr)}`);
  const { types } = JSON.parse(new TextDecoder().decode(out.stdout)) as { types: BtfType[] };
  return new Map(types.map((t) => [t.id, t]));
}

function sizeOf(types: Map<number, BtfType>, id: number): number {
  const t = types.get(id)!;
  switch (t.kind) {
    case "TYPEDEF":
    case "CONST":
    case "VOLATILE":
      return sizeOf(types, t.type_id!);
    case "ARRAY":
      return t.nr_elems! * sizeOf(types, t.type_id!);
    default:
      return t.size!;
  }
}

const CASES = [
  ["lm_conn_event", CONN, CONN_SIZE],
  ["lm_exec_event", EXEC, EXEC_SIZE],
  ["lm_exit_event", EXIT, EXIT_SIZE],
  ["lm_fork_event", FORK, FORK_SIZE],
  ["lm_dns_event", DNS, DNS_SIZE],
  ["lm_dns_query", DNS_QUERY, DNS_QUERY_SIZE],
  ["lm_config", CONFIG, CONFIG_SIZE],
  ["lm_cgroup_key", CGROUP_KEY, CGROUP_KEY_SIZE],
  ["lm_cgroup_names", CGROUP_NAMES, CGROUP_NAMES_SIZE],
  ["lm_flow_key", FLOW_KEY, FLOW_KEY_SIZE],
  ["lm_flow_stats", FLOW_STATS, FLOW_STATS_SIZE],
] as const;

for (const [name, fields, size] of CASES) {
  Deno.test(`decoder layout of ${name} matches the object's BTF`, async () => {
    const types = await btf();
    const struct = [...types.values()].find((t) => t.kind === "STRUCT" && t.name === name);
    assert.ok(struct, `${name} is in the object's BTF (run make bpf)`);
    assert.equal(struct.size, size, `sizeof(struct ${name})`);
    const members = new Map(struct.members!.map((m) => [m.name, m]));
    for (const [field, pos] of Object.entries(fields)) {
      const m = members.get(field);
      assert.ok(m, `${name}.${field} exists`);
      assert.equal(m.bits_offset / 8, pos.offset, `offset of ${name}.${field}`);
      assert.equal(sizeOf(types, m.type_id), pos.size, `size of ${name}.${field}`);
    }
    // Every member but explicit padding is decoded: a new field cannot be forgotten.
    const undecoded = [...members.keys()].filter((k) => !(k in fields) && !k.startsWith("_pad"));
    assert.deepEqual(undecoded, [], `members of ${name} the decoder ignores`);
  });
}

Deno.test("the loader pushes no more -include ports than lm_incl_port holds", () => {
  const object = BpfObject.open(Deno.readFileSync(OBJECT), "lightmon");
  try {
    assert.equal(object.mapMaxEntries("lm_incl_port"), MAX_INCLUDED_PORTS);
  } finally {
    object.close();
  }
});
