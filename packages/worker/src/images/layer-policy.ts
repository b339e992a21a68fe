/**
 * Decides, before anything is written, what applying one layer does to the rootfs: which paths
 * its whiteouts delete, which lower paths its entries replace, and whether any entry would write
 * outside the rootfs. Paths are resolved the way the kernel will resolve them when tar writes,
 * through symlinks already on disk or earlier in the same layer; a path that only resolves by
 * leaving the rootfs (an absolute symlink, a `..` above the root) is refused, and so are device
 * nodes and the shapes where tar would do something other than what is modelled here (entries
 * under a `.wh.*` directory, which tar's exclude skips; a directory over a symlink made earlier in
 * the same layer, which tar keeps and follows).
 */
import { lstatSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import type { TarEntry } from "./tar-list.js";

export class LayerRefusedError extends Error {
  constructor(readonly entry: string, readonly reason: string) {
    super(`layer refused: entry "${entry}" ${reason}`);
    this.name = "LayerRefusedError";
  }
}

type Kind = "dir" | "file" | "symlink" | "other" | "missing";
interface NodeState {
  kind: Kind;
  target?: string;
}

export interface LayerPlan {
  /** rootfs-relative paths (no symlinks in them) to delete before extraction, in order. */
  removals: string[];
  /** rootfs-relative directories whose existing contents are deleted (opaque whiteouts). */
  emptied: string[];
  entries: number;
}

export const WHITEOUT_PREFIX = ".wh.";
export const OPAQUE_MARKER = ".wh..wh..opq";

/** Splits a member name into components; absolute names and `..` are refused outright. */
export function memberComponents(name: string, what = name): string[] {
  if (name.includes("\0")) throw new LayerRefusedError(what, "contains a NUL byte");
  if (name.startsWith("/")) throw new LayerRefusedError(what, "is an absolute path");
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new LayerRefusedError(what, 'contains ".."');
  return parts;
}

class LayerView {
  private readonly added = new Map<string, NodeState>();
  private readonly lower = new Map<string, NodeState>();
  private readonly deleted = new Set<string>();
  private readonly opaque = new Set<string>();

  constructor(private readonly root: string) {}

  /** The state of the lower layers as seen through this layer's whiteouts. */
  lowerState(path: string): NodeState {
    const parts = path.split("/");
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (this.deleted.has(prefix) || (i < parts.length && this.opaque.has(prefix))) return { kind: "missing" };
    }
    let state = this.lower.get(path);
    if (!state) {
      state = this.readDisk(path);
      this.lower.set(path, state);
    }
    return state;
  }

  state(path: string): NodeState {
    if (path === "") return { kind: "dir" };
    return this.added.get(path) ?? this.lowerState(path);
  }

  private readDisk(path: string): NodeState {
    try {
      const st = lstatSync(join(this.root, path));
      if (st.isSymbolicLink()) return { kind: "symlink", target: readlinkSync(join(this.root, path)) };
      return { kind: st.isDirectory() ? "dir" : st.isFile() ? "file" : "other" };
    } catch {
      return { kind: "missing" };
    }
  }

  add(path: string, state: NodeState): void {
    this.added.set(path, state);
  }
  hasAdded(path: string): boolean {
    return this.added.has(path);
  }
  deletePath(path: string): void {
    this.deleted.add(path);
  }
  makeOpaque(path: string): void {
    this.opaque.add(path);
  }

  /** Resolves directory components as the kernel would, refusing any way out of the root. */
  resolveDir(components: string[], entry: string): string[] {
    const out: string[] = [];
    const queue = [...components];
    let hops = 0;
    while (queue.length > 0) {
      const c = queue.shift()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        if (out.length === 0) throw new LayerRefusedError(entry, "resolves above the image root");
        out.pop();
        continue;
      }
      const path = [...out, c].join("/");
      const st = this.state(path);
      if (st.kind === "symlink") {
        if (++hops > 40) throw new LayerRefusedError(entry, "goes through a symlink loop");
        if (st.target!.startsWith("/")) throw new LayerRefusedError(entry, `goes through the absolute symlink ${path} -> ${st.target}, which would leave the rootfs`);
        queue.unshift(...st.target!.split("/"));
        continue;
      }
      if (st.kind !== "dir" && st.kind !== "missing") throw new LayerRefusedError(entry, `needs ${path} to be a directory`);
      out.push(c);
    }
    return out;
  }
}

function stateOf(entry: TarEntry): NodeState {
  if (entry.type === "dir") return { kind: "dir" };
  if (entry.type === "symlink") return { kind: "symlink", target: entry.linkname };
  return { kind: entry.type === "file" || entry.type === "hardlink" ? "file" : "other" };
}

const basename = (parts: string[]): string => parts[parts.length - 1] ?? "";

/** Whiteouts apply to the lower layers only, whatever their position in the archive. */
function planWhiteouts(view: LayerView, entries: TarEntry[], plan: LayerPlan): void {
  for (const entry of entries) {
    const parts = memberComponents(entry.name);
    const base = basename(parts);
    if (!base.startsWith(WHITEOUT_PREFIX)) continue;
    const dir = view.resolveDir(parts.slice(0, -1), entry.name);
    if (base === OPAQUE_MARKER) {
      plan.emptied.push(dir.join("/"));
      view.makeOpaque(dir.join("/"));
      continue;
    }
    const target = base.slice(WHITEOUT_PREFIX.length);
    if (target === "" || target === "." || target === "..") throw new LayerRefusedError(entry.name, "is a whiteout of nothing");
    const path = [...dir, target].join("/");
    if (view.lowerState(path).kind !== "missing") plan.removals.push(path);
    view.deletePath(path);
  }
}

function planEntry(view: LayerView, entry: TarEntry, plan: LayerPlan): void {
  const parts = memberComponents(entry.name);
  if (parts.length === 0) {
    if (entry.type !== "dir") throw new LayerRefusedError(entry.name, "replaces the image root with a non-directory");
    return;
  }
  const path = [...view.resolveDir(parts.slice(0, -1), entry.name), basename(parts)].join("/");
  let state = stateOf(entry);
  if (entry.type === "hardlink") {
    const target = memberComponents(entry.linkname, `${entry.name} (hard link target)`);
    const targetPath = [...view.resolveDir(target.slice(0, -1), entry.name), basename(target)].join("/");
    const targetState = view.state(targetPath);
    if (target.length === 0 || targetState.kind === "missing" || targetState.kind === "dir") {
      throw new LayerRefusedError(entry.name, `is a hard link to ${entry.linkname}, which is not a file in the image`);
    }
    state = targetState;
  }
  // A lower symlink, or a lower node whose dir-ness differs, is removed first: tar then never
  // follows a lower symlink, and a file can replace a directory (Docker's semantics). Same-type
  // files need nothing: tar unlinks and recreates them itself.
  const added = view.hasAdded(path) ? view.state(path) : undefined;
  if (entry.type === "dir" && added?.kind === "symlink") {
    throw new LayerRefusedError(entry.name, `is a directory over the symlink ${path} made earlier in this layer (tar would keep the symlink)`);
  }
  const lower = view.lowerState(path);
  const conflict = lower.kind === "symlink" || (lower.kind !== "missing" && (lower.kind === "dir") !== (entry.type === "dir"));
  if (!view.hasAdded(path) && conflict) plan.removals.push(path);
  view.add(path, state);
}

export interface PlanOptions {
  /**
   * Layers (the default) treat `.wh.*` names as whiteouts, which tar is told to skip. Code
   * bundles have none: every entry is extracted as it is.
   */
  whiteouts?: boolean;
}

function refuseUnmodelled(entry: TarEntry, whiteouts: boolean): void {
  if (entry.type === "char-device" || entry.type === "block-device") {
    throw new LayerRefusedError(entry.name, `is a ${entry.type === "char-device" ? "character" : "block"} device node; images and bundles may not carry device nodes`);
  }
  // tar's --exclude=.wh.* matches any component, so it would skip an entry we would model.
  if (whiteouts && memberComponents(entry.name).slice(0, -1).some((p) => p.startsWith(WHITEOUT_PREFIX))) {
    throw new LayerRefusedError(entry.name, `has a "${WHITEOUT_PREFIX}" directory in its path`);
  }
}

/** Checks every entry of one layer against the rootfs as it is now; throws LayerRefusedError. */
export function planLayer(root: string, entries: TarEntry[], options: PlanOptions = {}): LayerPlan {
  const whiteouts = options.whiteouts ?? true;
  const view = new LayerView(root);
  const plan: LayerPlan = { removals: [], emptied: [], entries: entries.length };
  for (const entry of entries) refuseUnmodelled(entry, whiteouts);
  if (whiteouts) planWhiteouts(view, entries, plan);
  for (const entry of entries) {
    if (!whiteouts || !basename(memberComponents(entry.name)).startsWith(WHITEOUT_PREFIX)) planEntry(view, entry, plan);
  }
  return plan;
}
