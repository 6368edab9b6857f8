/**
 * Writes the README's field tables (the JSON event's keys, the filter fields) from
 * the registry in src/fields.ts, then formats the README. src/fields_test.ts fails
 * when the README and the registry disagree.
 * Usage: deno run -A scripts/readme_fields.ts
 * @module
 */
import { FIELDS, FILTER_FIELDS, type FilterSpec } from "../src/fields.ts";

/** The markers around each generated table. */
export const MARKERS = {
  json: ["<!-- fields:json -->", "<!-- /fields:json -->"],
  filter: ["<!-- fields:filter -->", "<!-- /fields:filter -->"],
} as const;

/** What a filter kind matches, for the README. */
function matches(spec: FilterSpec): string {
  switch (spec.kind) {
    case "number":
      return `whole number, 0-${spec.max}`;
    case "address":
      return "IP or CIDR";
    case "text":
      return "exact; `*` matches any run of characters";
    case "substring":
      return "substring";
    case "choice":
      return Object.keys(spec.values).map((v) => `\`${v}\``).join(", ");
  }
}

/** The rows of each table: cells as they appear in the README, before formatting. */
export function tableRows(): Record<keyof typeof MARKERS, string[][]> {
  return {
    json: [
      ["key", "type", "meaning"],
      ...FIELDS.filter((f) => f.json).map((f) => [`\`${f.key}\``, f.json ? f.json.type : "", f.doc]),
    ],
    filter: [
      ["field", "matches", "meaning"],
      ...[...FILTER_FIELDS.values()].map((f) => [
        `\`${f.name}\`${f.original ? " (original)" : ""}`,
        matches(f.spec),
        f.doc,
      ]),
    ],
  };
}

/** A markdown table of rows (the first is the header). */
export function markdownTable(rows: string[][]): string {
  const line = (r: string[]) => `| ${r.join(" | ")} |`;
  return [line(rows[0]), line(rows[0].map(() => "---")), ...rows.slice(1).map(line)].join("\n");
}

/** The cells of the markdown table between a pair of markers in `text`. */
export function readmeRows(text: string, [open, close]: readonly [string, string]): string[][] {
  const start = text.indexOf(open);
  const end = text.indexOf(close);
  if (start < 0 || end < start) throw new Error(`README: markers ${open} ... ${close} not found`);
  return text.slice(start + open.length, end).split("\n")
    .filter((l) => l.startsWith("|") && !/^\|[\s|:-]+\|$/.test(l))
    .map((l) => l.slice(1, -1).split(" | ").map((c) => c.trim()));
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  let text = await Deno.readTextFile(path);
  const rows = tableRows();
  for (const [name, [open, close]] of Object.entries(MARKERS)) {
    const start = text.indexOf(open);
    const end = text.indexOf(close);
    if (start < 0 || end < start) throw new Error(`README: markers ${open} ... ${close} not found`);
    const table = markdownTable(rows[name as keyof typeof MARKERS]);
    text = `${text.slice(0, start + open.length)}\n\n${table}\n\n${text.slice(end)}`;
  }
  await Deno.writeTextFile(path, text);
  const fmt = await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", path.pathname] }).output();
  if (!fmt.success) throw new Error(new TextDecoder().decode(fmt.stderr));
}
