/** Host figures for keepalives, the TUI and /metrics: CPU % between samples, memory %, disk %. */
import { existsSync, readFileSync, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { cpus, freemem, totalmem } from "node:os";

interface CpuTimes {
  idle: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  let idle = 0;
  let total = 0;
  for (const cpu of cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

const clampPercent = (n: number) => Math.round(Math.min(100, Math.max(0, n)) * 10) / 10;

export class SystemSampler {
  private last = cpuTimes();
  private lastPercent = 0;

  constructor(private readonly diskPath: string) {}

  /** CPU busy % since the previous call (the first call measures since construction). */
  cpuPercent(): number {
    const now = cpuTimes();
    const total = now.total - this.last.total;
    if (total > 0) this.lastPercent = clampPercent(100 * (1 - (now.idle - this.last.idle) / total));
    this.last = now;
    return this.lastPercent;
  }

  /** Used memory %, counting reclaimable page cache as free (MemAvailable) where the kernel says it. */
  memoryPercent(): number {
    const total = totalmem();
    let available = freemem();
    try {
      const m = readFileSync("/proc/meminfo", "utf8").match(/^MemAvailable:\s+(\d+) kB/m);
      if (m) available = Number(m[1]) * 1024;
    } catch {
      // not Linux: freemem() it is
    }
    return total > 0 ? clampPercent(100 * (1 - available / total)) : 0;
  }

  /** Used % of the filesystem holding the worker's state (images, containers' layers). */
  diskPercent(): number {
    try {
      // The state dir may not exist yet (before the worker starts): its nearest existing parent is on the same disk, usually.
      let path = this.diskPath;
      while (!existsSync(path) && dirname(path) !== path) path = dirname(path);
      const s = statfsSync(path);
      const total = s.blocks * s.bsize;
      return total > 0 ? clampPercent(100 * (1 - (s.bavail * s.bsize) / total)) : 0;
    } catch {
      return 0;
    }
  }
}
