/**
 * Volumes from the command line: `beta9 volume create|list|delete`, and `beta9 ls`, `cp` and `rm`
 * on `VOLUME:PATH`. Files stream both ways; `cp` takes directories recursively (symlinks as
 * links, empty directories too), resumes a broken upload (only chunks never stored are sent again),
 * and shows a progress bar on a terminal, a line per file otherwise.
 */
import { stat } from "node:fs/promises";
import type { Command } from "commander";
import type { TransferProgress, UploadedFile } from "beta9";
import { parseVolumeSpec, volumeNameProblem, volumePath, VolumePathError, type VolumeEntry, type VolumeInfo } from "@beta9/protocol";
import { CliError, EXIT } from "../errors.js";
import { forEachId, withClient } from "../session.js";
import { print, printJson, printTable, shortTime } from "../output.js";

/** "NAME" or "NAME:PATH" → both parts, checked (a bad name or path is a usage error naming the rule). */
function volumeArg(spec: string, allowRoot: boolean): { volume: string; path: string } {
  const colon = spec.indexOf(":");
  const volume = colon === -1 ? spec : spec.slice(0, colon);
  const problem = volumeNameProblem(volume);
  if (problem) throw new CliError("USAGE", problem, EXIT.usage);
  return { volume, path: checkedPath(colon === -1 ? "" : spec.slice(colon + 1), allowRoot) };
}

function checkedPath(raw: string, allowRoot: boolean): string {
  try {
    return volumePath(raw, allowRoot);
  } catch (err) {
    if (err instanceof VolumePathError) throw new CliError("USAGE", `volume path ${err.message}`, EXIT.usage);
    throw err;
  }
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * Progress of a copy on stderr: on a terminal, one line rewritten in place with a bar; otherwise
 * (a log, a pipe) a plain line per file as it is through, so that nothing is rewritten in a file.
 */
function progressLine(verb: string): { update(p: TransferProgress): void; file(f: UploadedFile): void; end(): void } {
  if (!process.stderr.isTTY) {
    return {
      update() {},
      file(f) {
        const how = f.sent === 0 ? ", stored already: nothing sent" : f.sent !== undefined && f.sent < f.size ? `, ${formatBytes(f.sent)} sent (the rest was stored already)` : "";
        process.stderr.write(`${verb} ${f.path} (${formatBytes(f.size)}${how})\n`);
      },
      end() {},
    };
  }
  let last = 0;
  let shown = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 100 && p.done < p.total) return;
      last = now;
      shown = true;
      const fraction = p.total === 0 ? 1 : Math.min(1, p.done / p.total);
      const bar = `[${"#".repeat(Math.round(fraction * 20)).padEnd(20, ".")}]`;
      const line = `${bar} ${Math.floor(fraction * 100)}% ${formatBytes(p.done)} / ${formatBytes(p.total)}  ${verb} ${p.path}`;
      process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
    },
    file() {},
    end() {
      if (shown) process.stderr.write("\r\x1b[2K");
    },
  };
}

export function registerVolume(program: Command): void {
  const volume = program.command("volume").description("manage volumes: named file trees that containers on any worker mount (see beta9 ls, cp, rm)");

  volume.command("create").description("create an empty volume").argument("<name>")
    .action((name: string, _opts: unknown, command: Command) =>
      withClient(command, async (client) => {
        volumeArg(name, true);
        await client.volumes.create(name);
        print(`created volume ${name}`);
      }));

  volume.command("list").description("list volumes: files, bytes, version").option("--json", "print a JSON array")
    .action((opts: { json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const items = await client.volumes.list();
        if (opts.json) return printJson(items);
        printTable(["NAME", "FILES", "SIZE", "VERSION", "UPDATED"], items.map((v: VolumeInfo) =>
          [v.name, String(v.files), formatBytes(v.bytes), String(v.version), shortTime(v.updatedAt)]), "no volumes (beta9 volume create NAME)");
      }));

  volume.command("delete").description("delete volumes and their files").argument("<name...>")
    .action((names: string[], _opts: unknown, command: Command) =>
      withClient(command, (client) => forEachId(names, async (name) => {
        volumeArg(name, true);
        await client.volumes.delete(name);
        print(`deleted volume ${name}`);
      })));

  program.command("ls").description("list a volume's files: beta9 ls VOLUME[:PATH]").argument("<volume[:path]>")
    .option("-r, --recursive", "every file below, not only the directory's children").option("--json", "print a JSON array")
    .action((spec: string, opts: { recursive?: boolean; json?: boolean }, command: Command) =>
      withClient(command, async (client) => {
        const { volume: name, path } = volumeArg(spec, true);
        const items = await client.volumes.ls(name, path, { recursive: opts.recursive === true });
        if (opts.json) return printJson(items);
        printTable(["PATH", "TYPE", "SIZE", "MODE", "MODIFIED"], items.map((e: VolumeEntry) => [
          e.type === "dir" ? `${e.path}/` : e.type === "link" ? `${e.path} -> ${e.target ?? "?"}` : e.path, e.type, formatBytes(e.size), e.mode === undefined ? "-" : e.mode.toString(8),
          e.mtime === undefined ? "-" : shortTime(new Date(e.mtime).toISOString()),
        ]), `volume ${name} is empty${path ? ` at ${path}` : ""} (beta9 cp FILE ${name}:PATH)`);
      }));

  program.command("cp").description("copy files into or out of a volume (directories recursively): beta9 cp LOCAL VOLUME:PATH, beta9 cp VOLUME:PATH LOCAL")
    .argument("<source>").argument("<destination>").option("-r, --recursive", "accepted for habit: directories are always copied recursively")
    .action((source: string, destination: string, _opts: unknown, command: Command) =>
      withClient(command, async (client) => {
        const from = parseVolumeSpec(source);
        const to = parseVolumeSpec(destination);
        if (Boolean(from) === Boolean(to)) {
          const named = [source, destination].find((a) => a.includes(":"));
          const hint = !from && named ? `; ${volumeNameProblem(named.slice(0, named.indexOf(":"))) ?? `${named} is a local path`}` : "";
          throw new CliError("USAGE", `give one local path and one VOLUME:PATH (e.g. beta9 cp model.bin models:weights/model.bin)${hint}`, EXIT.usage);
        }
        if (to) {
          if (!(await stat(source).catch(() => undefined))) throw new CliError("USAGE", `${source}: no such file or directory`, EXIT.usage);
          const { volume: name, path } = volumeArg(destination, true);
          const progress = progressLine("uploading");
          const done = await client.volumes.upload(name, source, to.path, { onProgress: (p) => progress.update(p), onFile: (f) => progress.file(f) })
            .finally(() => progress.end());
          const bytes = done.reduce((sum, f) => sum + f.size, 0);
          const sent = done.reduce((sum, f) => sum + (f.sent ?? f.size), 0);
          const note = sent < bytes ? `; ${formatBytes(sent)} sent, the rest was stored already` : "";
          print(`copied ${done.length} file${done.length === 1 ? "" : "s"} (${formatBytes(bytes)}${note}) to ${name}:${done.length === 1 ? done[0]!.path : path || "."}`);
          return;
        }
        const { volume: name, path } = volumeArg(source, true);
        const progress = progressLine("downloading");
        const done = (await client.volumes.download(name, path, destination, { onProgress: (p) => progress.update(p), onFile: (f) => progress.file(f) })
          .finally(() => progress.end())).filter((e) => e.type === "file");
        const bytes = done.reduce((sum, e) => sum + e.size, 0);
        print(`copied ${done.length} file${done.length === 1 ? "" : "s"} (${formatBytes(bytes)}) from ${name}:${path || "."} to ${destination}`);
      }));

  program.command("rm").description("remove a file from a volume, or a directory with -r: beta9 rm VOLUME:PATH").argument("<volume:path...>")
    .option("-r, --recursive", "remove directories and everything below them")
    .action((specs: string[], opts: { recursive?: boolean }, command: Command) =>
      withClient(command, (client) => forEachId(specs, async (spec) => {
        if (!spec.includes(":")) throw new CliError("USAGE", `${spec}: name what to remove as VOLUME:PATH (beta9 volume delete NAME removes a whole volume)`, EXIT.usage);
        const { volume: name, path } = volumeArg(spec, opts.recursive === true);
        const { removed } = await client.volumes.remove(name, path, { recursive: opts.recursive === true });
        print(`removed ${removed} file${removed === 1 ? "" : "s"} from ${name}:${path || "."}`);
      })));
}
