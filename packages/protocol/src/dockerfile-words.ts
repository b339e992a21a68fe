/**
 * Dockerfile word processing: quote removal, escapes and `$VAR` / `${VAR}` / `${VAR:-word}`
 * substitution, the way Docker's shell lexer does it. One lexer serves the Dockerfile parser (on
 * the SDK side and in the gateway, which both normalize specs) and the worker, which expands the
 * values of `env` steps against the base image's environment at build time.
 *
 * "Keep unknown" mode is for ENV values: a variable the Dockerfile does not define (e.g. PATH from
 * the base image) cannot be known when the spec is made, so the reference is kept and everything
 * else is written in an escaped form that {@link expandEnvValue} later turns into the final value.
 */

export type Lookup = (name: string) => string | undefined;

export interface WordOptions {
  /** The Dockerfile's escape character (`# escape=` directive); default backslash. */
  escape?: "\\" | "`";
  /** Keep references to unknown variables, escaping the rest (see the module comment). */
  keepUnknown?: boolean;
  /** Characters substitutions may still copy, shared by a Dockerfile's words; past it, WordError. */
  budget?: { left: number };
}

export interface Expanded {
  value: string;
  /** Names that were not known (kept as references in keepUnknown mode, else expanded to ""). */
  unknown: string[];
}

export class WordError extends Error {
  override name = "WordError";
}

const NAME_CHAR = /[A-Za-z0-9_]/;
/** What substitutions may copy in one Dockerfile (see WordOptions.budget). */
export const EXPANSION_BUDGET_CHARS = 1024 * 1024;
/** Characters that the escaped form writes with a backslash in front. */
const SPECIAL = /[\\$'"}]/g;

/** `value` in the escaped form of keepUnknown mode: expands back to exactly `value`. */
export function escapeWord(value: string): string {
  return value.replace(SPECIAL, (c) => `\\${c}`);
}

class Lexer {
  private pos = 0;
  readonly unknown: string[] = [];
  private readonly esc: string;

  constructor(private readonly s: string, private readonly lookup: Lookup, private readonly keep: boolean, escape: string, private readonly budget?: { left: number }) {
    this.esc = escape;
  }

  private lit(c: string): string {
    return this.keep ? escapeWord(c) : c;
  }

  /** Reads to the end, or to an unquoted `stop` character (left for the caller). */
  run(stop?: string): string {
    let out = "";
    const s = this.s;
    while (this.pos < s.length) {
      const c = s[this.pos]!;
      if (stop !== undefined && c === stop) return out;
      if (c === this.esc) {
        this.pos++;
        out += this.lit(this.pos < s.length ? s[this.pos++]! : this.esc);
      } else if (c === "'") {
        const end = s.indexOf("'", this.pos + 1);
        if (end < 0) throw new WordError("unterminated single quote");
        out += this.lit(s.slice(this.pos + 1, end));
        this.pos = end + 1;
      } else if (c === '"') {
        out += this.doubleQuoted();
      } else if (c === "$") {
        out += this.dollar();
      } else {
        out += this.lit(c);
        this.pos++;
      }
    }
    if (stop !== undefined) throw new WordError("a ${ is not closed by }");
    return out;
  }

  private doubleQuoted(): string {
    let out = "";
    const s = this.s;
    this.pos++;
    while (this.pos < s.length) {
      const c = s[this.pos]!;
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c === this.esc && this.pos + 1 < s.length && ['"', "$", this.esc].includes(s[this.pos + 1]!)) {
        out += this.lit(s[this.pos + 1]!);
        this.pos += 2;
      } else if (c === "$") {
        out += this.dollar();
      } else {
        out += this.lit(c);
        this.pos++;
      }
    }
    throw new WordError("unterminated double quote");
  }

  private readName(): string {
    const start = this.pos;
    while (this.pos < this.s.length && NAME_CHAR.test(this.s[this.pos]!)) this.pos++;
    return this.s.slice(start, this.pos);
  }

  private value(name: string, v: string | undefined): string {
    if (v !== undefined) {
      // Substitutions can double a value per line ($A$A): what they copy is bounded per Dockerfile.
      if (this.budget && (this.budget.left -= v.length) < 0) throw new WordError(`variables expand to more than ${EXPANSION_BUDGET_CHARS} characters in all`);
      return this.keep ? escapeWord(v) : v;
    }
    this.unknown.push(name);
    return this.keep ? `\${${name}}` : "";
  }

  private dollar(): string {
    const s = this.s;
    this.pos++;
    if (this.pos >= s.length) return this.lit("$");
    if (s[this.pos] !== "{") {
      if (!NAME_CHAR.test(s[this.pos]!)) return this.lit("$");
      const name = this.readName();
      return this.value(name, this.lookup(name));
    }
    this.pos++;
    const name = this.readName();
    if (!name) throw new WordError(`bad substitution \${${s.slice(this.pos, this.pos + 10)}`);
    if (s[this.pos] === "}") {
      this.pos++;
      return this.value(name, this.lookup(name));
    }
    const colon = s[this.pos] === ":";
    if (colon) this.pos++;
    const op = s[this.pos];
    if (op !== "-" && op !== "+" && op !== "?") throw new WordError(`\${${name}${colon ? ":" : ""}${op ?? ""}…}: only the :- :+ :? (and - + ?) modifiers are supported`);
    this.pos++;
    const word = this.run("}");
    this.pos++;
    const v = this.lookup(name);
    if (v === undefined && this.keep) {
      this.unknown.push(name);
      return `\${${name}${colon ? ":" : ""}${op}${word}}`;
    }
    const unset = v === undefined || (colon && v === "");
    if (op === "-") return unset ? word : this.value(name, v);
    if (op === "+") return unset ? "" : word;
    if (unset) throw new WordError(`${name}: ${word || "is not set"}`);
    return this.value(name, v);
  }
}

/** Quote removal and substitution of one word (or of a whole ENV value in legacy form). */
export function expandWord(word: string, lookup: Lookup, options: WordOptions = {}): Expanded {
  const lexer = new Lexer(word, lookup, options.keepUnknown === true, options.escape ?? "\\", options.budget);
  const value = lexer.run();
  return { value, unknown: lexer.unknown };
}

/**
 * Splits arguments into raw words at unquoted, unescaped whitespace; quotes and escapes stay in
 * place for {@link expandWord}.
 */
export function splitWords(text: string, escape: "\\" | "`" = "\\"): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === undefined && /\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      continue;
    }
    inWord = true;
    word += c;
    if (c === escape && quote !== "'" && i + 1 < text.length) {
      word += text[++i];
    } else if (quote === undefined && (c === "'" || c === '"')) {
      quote = c;
    } else if (c === quote) {
      quote = undefined;
    }
  }
  if (quote !== undefined) throw new WordError(`unterminated ${quote === "'" ? "single" : "double"} quote`);
  if (inWord) words.push(word);
  return words;
}

/**
 * The value an `env` step sets, given the environment so far (the base image's config plus the
 * earlier steps): the Dockerfile's ENV semantics, applied where the base image is known.
 */
export function expandEnvValue(value: string, env: Readonly<Record<string, string>>): string {
  return expandWord(value, (name) => (Object.hasOwn(env, name) ? env[name] : undefined)).value;
}
