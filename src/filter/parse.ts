/**
 * The filter language's grammar, as the original lightmon wrote it and beyond:
 *
 *     expr  := or (';' or)*            ';' separates groups: OR, lowest precedence
 *     or    := and ('||' and)*
 *     and   := atom ('&&' atom)*        '&&' binds tighter than '||'
 *     atom  := '(' expr ')' | FIELD OP VALUE
 *     OP    := '=' | '==' | '!=' | '<' | '<=' | '>' | '>='   (the last four for numbers)
 *     VALUE := bare word | 'single quoted' | "double quoted"
 *
 * Errors carry the 1-based column of the offending token.
 * @module
 */
import { forTerminal } from "../text/sanitize.ts";

/** A parsed filter expression. */
export type Node =
  | { type: "or"; items: Node[] }
  | { type: "and"; items: Node[] }
  | { type: "cond"; field: string; op: CondOp; value: string; column: number; opColumn: number; valueColumn: number };

/** A condition's operator. */
export type CondOp = "=" | "!=" | Comparison;
/** The operators that compare numbers. */
export type Comparison = "<" | "<=" | ">" | ">=";

const COND_OPS: ReadonlySet<string> = new Set(["=", "!=", "<", "<=", ">", ">="]);

/** A syntax error with the column it was found at. */
export class FilterSyntaxError extends Error {
  readonly column: number;
  constructor(message: string, column: number) {
    // The message quotes user text: keep it one inert line whatever that text holds.
    super(`${forTerminal(message)} at column ${column}`);
    this.name = "FilterSyntaxError";
    this.column = column;
  }
}

type Tok =
  | { kind: "word"; text: string; col: number; quoted: boolean }
  | { kind: "op"; text: CondOp | "&&" | "||" | ";" | "(" | ")"; col: number }
  | { kind: "end"; col: number };

/** Deeper nesting is refused: the parser recurses once per level. */
export const MAX_DEPTH = 64;

const WORD_CHAR = /[^\s=!&|;()'"<>]/;

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    const col = i + 1;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'" || c === '"') {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw new FilterSyntaxError(`unterminated ${c === "'" ? "single" : "double"} quote`, col);
      out.push({ kind: "word", text: src.slice(i + 1, end), col, quoted: true });
      i = end + 1;
    } else if (
      ["&&", "||", "!=", "==", "<=", ">="].some((two) => src.startsWith(two, i))
    ) {
      const text = src.slice(i, i + 2);
      out.push({ kind: "op", text: text === "==" ? "=" : text as "&&" | "||" | "!=" | "<=" | ">=", col });
      i += 2;
    } else if ("=;()<>".includes(c)) {
      out.push({ kind: "op", text: c as "=" | ";" | "(" | ")" | "<" | ">", col });
      i++;
    } else if (WORD_CHAR.test(c)) {
      let j = i;
      while (j < src.length && WORD_CHAR.test(src[j])) j++;
      out.push({ kind: "word", text: src.slice(i, j), col, quoted: false });
      i = j;
    } else {
      throw new FilterSyntaxError(`unexpected '${c}'`, col);
    }
  }
  out.push({ kind: "end", col: src.length + 1 });
  return out;
}

function describe(t: Tok): string {
  if (t.kind === "end") return "end of expression";
  if (t.kind === "op") return `'${t.text}'`;
  return t.quoted ? `quoted '${t.text}'` : `'${t.text}'`;
}

/**
 * Parse a filter expression. An empty (or all-space) expression is undefined.
 *
 * @example
 * ```ts
 * parseFilter('dip="10.0.0.1" && dport=80; dip="10.0.0.1" && dport=443');
 * ```
 */
export function parseFilter(src: string): Node | undefined {
  const toks = tokenize(src);
  if (toks.length === 1) return undefined;
  let p = 0;
  let depth = 0;
  const peek = () => toks[p];
  const isOp = (t: Tok, text: string) => t.kind === "op" && t.text === text;

  function expr(): Node {
    const items = [or()];
    while (isOp(peek(), ";")) {
      p++;
      // A trailing ';' (or ';;') is harmless: the original's configs have them.
      if (peek().kind === "end" || isOp(peek(), ")") || isOp(peek(), ";")) continue;
      items.push(or());
    }
    return items.length === 1 ? items[0] : { type: "or", items };
  }

  function or(): Node {
    const items = [and()];
    while (isOp(peek(), "||")) {
      p++;
      items.push(and());
    }
    return items.length === 1 ? items[0] : { type: "or", items };
  }

  function and(): Node {
    const items = [atom()];
    while (isOp(peek(), "&&")) {
      p++;
      items.push(atom());
    }
    return items.length === 1 ? items[0] : { type: "and", items };
  }

  function atom(): Node {
    const t = peek();
    if (isOp(t, "(")) {
      if (++depth > MAX_DEPTH) throw new FilterSyntaxError(`parentheses nested deeper than ${MAX_DEPTH}`, t.col);
      p++;
      const inner = expr();
      depth--;
      const close = peek();
      if (!isOp(close, ")")) throw new FilterSyntaxError(`expected ')' but found ${describe(close)}`, close.col);
      p++;
      return inner;
    }
    if (t.kind !== "word" || t.quoted) {
      throw new FilterSyntaxError(
        t.kind === "end" ? "expected a condition but the expression ended" : `unexpected ${describe(t)}`,
        t.col,
      );
    }
    p++;
    const op = peek();
    if (op.kind !== "op" || !COND_OPS.has(op.text)) {
      throw new FilterSyntaxError(
        `expected '=', '!=', '<', '<=', '>' or '>=' after '${t.text}' but found ${describe(op)}`,
        op.col,
      );
    }
    p++;
    const v = peek();
    if (v.kind !== "word") {
      throw new FilterSyntaxError(`expected a value after '${op.text}' but found ${describe(v)}`, v.col);
    }
    p++;
    return {
      type: "cond",
      field: t.text,
      op: op.text as CondOp,
      value: v.text,
      column: t.col,
      opColumn: op.col,
      valueColumn: v.col,
    };
  }

  const node = expr();
  const rest = peek();
  if (rest.kind !== "end") throw new FilterSyntaxError(`unexpected ${describe(rest)}`, rest.col);
  return node;
}
