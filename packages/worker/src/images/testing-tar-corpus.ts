/**
 * A generated corpus of hostile layer archives (used only by tests). Every piece tries to write,
 * link, chmod or delete outside the rootfs: by name (absolute, `..`), through symlinks (from a
 * lower layer or the same one), through hard links, or by making the check read other names than
 * GNU tar does (pax `x`/`g` overrides, repeated headers, GNU long names, number fields tar reads
 * differently, data the check would skip). Pieces are combined at random from a seed.
 */
import { leadingNulSize, pax, rawHeader, rawTar, type RawEntry } from "./testing-tar.js";

export interface Piece {
  what: string;
  entries: (RawEntry | Buffer)[];
  /** The header check must refuse it (rather than only the confinement containing it). */
  refused: boolean;
  /** Ends the archive (a lone zero block): goes last. */
  last?: boolean;
}

/**
 * The lower layer every case is applied over: an absolute symlink to the sentinel dir and
 * relative ones that climb out, all harmless until something goes through them.
 */
export function preludeLayer(outside: string): Buffer {
  return rawTar([
    { name: "esc", type: "2", link: outside },
    { name: "esc2", type: "2", link: outside },
    { name: "up", type: "2", link: ".." },
    { name: "d/", type: "5" },
    { name: "d/rel", type: "2", link: "../../outside" },
    { name: "ok/", type: "5" },
    { name: "ok/file", data: "inside" },
  ]);
}

const file = (name: string, data = "pwned"): RawEntry => ({ name, data });

/** Every hostile piece, for a sentinel dir at `o` (an absolute path) beside the rootfs. */
export function pieces(o: string): Piece[] {
  const p = (what: string, refused: boolean, ...entries: (RawEntry | Buffer)[]): Piece => ({ what, entries, refused });
  return [
    p("a ../ name", true, file("../evil")),
    p("an absolute name", true, file(`${o}/evil`)),
    p("a ../ in the middle", true, file("ok/../../evil")),
    p("a file through the lower absolute symlink", true, file("esc/evil")),
    p("a file through a lower relative symlink to ..", true, file("up/outside/evil")),
    p("a file through a lower relative symlink that climbs two levels", true, file("d/rel/evil")),
    p("a symlink then a file through it", true, { name: "s1", type: "2", link: o }, file("s1/evil")),
    p("a relative .. symlink then a file through it", true, { name: "s2", type: "2", link: ".." }, file("s2/outside/evil")),
    p("a symlink chain into a climbing symlink", true, { name: "s3", type: "2", link: "d/rel" }, file("s3/evil")),
    p("a hard link to ../outside", true, { name: "h1", type: "1", link: "../outside/keep" }),
    p("a hard link to an absolute path", true, { name: "h2", type: "1", link: `${o}/keep` }),
    p("a hard link through the absolute symlink", true, { name: "h3", type: "1", link: "esc/keep" }),
    p("a hard link to the symlink, then a file through it", true, { name: "h4", type: "1", link: "esc" }, file("h4/evil")),
    p("a GNU long name through the symlink", true, { name: "././@LongLink", type: "L", data: "esc/evil\0" }, file("short1")),
    p("two GNU long names (tar keeps the last)", true, { name: "././@LongLink", type: "L", data: "benign\0" }, { name: "././@LongLink", type: "L", data: "esc/evil\0" }, file("short2")),
    p("a GNU long link out", true, { name: "././@LongLink", type: "K", data: `${o}/keep\0` }, { name: "hk", type: "1", link: "ok/file" }),
    p("a character device", true, { name: "cdev", type: "3" }),
    p("a block device", true, { name: "bdev", type: "4" }),
    p("a pax path through the symlink", true, { name: "PaxHeaders/p", type: "x", data: pax({ path: "esc/evil" }) }, file("benign1")),
    p("a pax linkpath out", true, { name: "PaxHeaders/l", type: "x", data: pax({ linkpath: "../outside/keep" }) }, { name: "hl", type: "1", link: "ok/file" }),
    p("a pax global path", true, { name: "pax_global_header", type: "g", data: pax({ path: "esc/evil" }) }, file("benign2")),
    p("a pax global linkpath", true, { name: "pax_global_header", type: "g", data: pax({ linkpath: `${o}/keep` }) }, { name: "hg", type: "1", link: "ok/file" }),
    p("two pax headers (tar keeps the last)", true,
      { name: "PaxHeaders/a", type: "x", data: pax({ path: "benign3" }) }, { name: "PaxHeaders/b", type: "x", data: pax({ mtime: "1" }) }, file("esc/evil")),
    p("a pax path and a GNU long name", true, { name: "PaxHeaders/c", type: "x", data: pax({ path: "benign4" }) }, { name: "././@LongLink", type: "L", data: "esc/evil\0" }, file("short3")),
    p("a Solaris X header (tar reads it as pax)", true, { name: "PaxHeaders/X", type: "X", data: pax({ path: "esc/evil" }) }, file("benign5")),
    p("a size with a leading NUL hiding a header", true,
      // tar: "lead" holds 512 bytes (the decoy's header), then comes esc/evil; a plain octal
      // reading: "lead" is empty and esc/evil is the decoy's data.
      rawHeader({ name: "lead", sizeField: leadingNulSize(512) }, 0), rawHeader({ name: "decoy" }, 512), rawHeader({ name: "esc/evil" }, 0)),
    p("a pax size of 0 exposing a header in the data", true,
      { name: "PaxHeaders/s", type: "x", data: pax({ size: "0" }) }, { name: "padded", data: rawHeader({ name: "esc/evil" }, 0) }),
    p("a file named like a directory over the symlink", true, { name: "esc/", type: "0" }),
    p("a whiteout through the symlink", true, file("esc/.wh.keep", "")),
    p("an opaque whiteout through the symlink", true, file("esc/.wh..wh..opq", "")),
    p("an entry under a .wh. directory", true, file(".wh.dir/evil")),
    p("a directory entry over a lower symlink", false, { name: "esc2/", type: "5", mode: 0o777 }),
    p("a directory over a symlink made in this layer", true, { name: "s4", type: "2", link: "ok" }, { name: "s4/", type: "5", mode: 0o700 }),
    p("a base-256 size", false, { name: "b256", sizeField: Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0]), data: rawHeader({ name: "esc/evil" }, 0) }),
    { what: "a lone zero block, then a file through the symlink", entries: [Buffer.alloc(512), rawHeader({ name: "esc/evil" }, 0)], refused: false, last: true },
  ];
}

/** mulberry32: a small seeded generator, so a failing case can be replayed from its seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Case {
  what: string;
  archive: Buffer;
  refused: boolean;
}

/** `count` archives of 1 to 3 random pieces among benign files, in random order. */
export function corpus(o: string, seed: number, count: number): Case[] {
  const all = pieces(o);
  const random = seeded(seed);
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
  const cases: Case[] = all.map((piece) => ({ what: piece.what, archive: rawTar([...piece.entries]), refused: piece.refused }));
  for (let i = cases.length; i < count; i++) {
    const chosen = Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(all));
    const used = [...new Set(chosen)].sort((a, b) => Number(a.last ?? false) - Number(b.last ?? false) || random() - 0.5);
    const entries: (RawEntry | Buffer)[] = [];
    for (const [j, piece] of used.entries()) {
      if (random() < 0.5) entries.push(file(`ok/benign-${i}-${j}`, "fine"));
      entries.push(...piece.entries);
    }
    // A refused piece after a lone zero block is never read (by tar either), so it does not count.
    const read = used.filter((piece, k) => !used.slice(0, k).some((q) => q.last));
    cases.push({ what: used.map((piece) => piece.what).join(" + "), archive: rawTar(entries), refused: read.some((piece) => piece.refused && !piece.last) });
  }
  return cases;
}
