/**
 * Finds the Debian mirror this machine's apt uses, so the default base image is built from the
 * same (reachable, possibly local or pinned) mirror instead of a hard-coded host.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

interface Source {
  types: string[];
  uris: string[];
  suites: string[];
}

/** deb822 stanzas ("Types: deb\nURIs: ...\nSuites: ...") separated by blank lines. */
export function parseDeb822(text: string): Source[] {
  return text
    .split(/\n\s*\n/)
    .map((stanza) => {
      const fields: Record<string, string> = {};
      let last = "";
      for (const line of stanza.split("\n")) {
        if (line.startsWith("#") || line.trim() === "") continue;
        if (/^\s/.test(line) && last) fields[last] += ` ${line.trim()}`; // continuation line
        const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
        if (m) fields[(last = m[1]!.toLowerCase())] = m[2]!.trim();
      }
      const list = (k: string): string[] => (fields[k] ?? "").split(/\s+/).filter(Boolean);
      return { types: list("types"), uris: list("uris"), suites: list("suites") };
    })
    .filter((s) => s.uris.length > 0);
}

/** One-line format: `deb [options] uri suite component...`. */
export function parseOneLine(text: string): Source[] {
  const out: Source[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").replace(/\[[^\]]*\]/, " ").trim();
    const [type, uri, suite] = line.split(/\s+/);
    if (type && uri && suite) out.push({ types: [type], uris: [uri], suites: [suite] });
  }
  return out;
}

/** The first `deb` source that carries `suite` (e.g. "bookworm"). */
export async function findDebianMirror(suite: string, aptDir = "/etc/apt"): Promise<string> {
  const sources: Source[] = [];
  const dir = join(aptDir, "sources.list.d");
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.sort()) {
    if (name.endsWith(".sources")) sources.push(...parseDeb822(await readFile(join(dir, name), "utf8")));
    else if (name.endsWith(".list")) sources.push(...parseOneLine(await readFile(join(dir, name), "utf8")));
  }
  sources.push(...parseOneLine(await readFile(join(aptDir, "sources.list"), "utf8").catch(() => "")));
  const match = sources.find((s) => s.types.includes("deb") && s.suites.includes(suite));
  if (!match) throw new Error(`no apt source for Debian ${suite} in ${aptDir}/sources.list(.d); configure one, or pass a mirror`);
  return match.uris[0]!;
}
