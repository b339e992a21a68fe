import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DeviceAllocator, NVIDIA_SMI_ARGS, ROCM_SMI_ARGS, detectDevices, gpuInventory, gpuTypeOf, type CommandRunner } from "./index.js";

// Tests run from dist/; the fixtures stay in src/.
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../../src/devices/fixtures");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");

const roots: string[] = [];
after(() => { for (const r of roots) rmSync(r, { recursive: true, force: true }); });

/** A temp dir standing in for "/", with files given as { "/sys/...": "content" }. */
function fsRoot(files: Record<string, string> = {}): string {
  const root = mkdtempSync(join(tmpdir(), "b9-devices-"));
  roots.push(root);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

const enoent = () => Object.assign(new Error("spawn ENOENT"), { code: "ENOENT" });
/** Answers recorded outputs by "command arg arg"; anything else is a missing tool. */
function recorded(outputs: Record<string, string | Error>): CommandRunner {
  return async (command, args) => {
    const out = outputs[[command, ...args].join(" ")];
    if (out === undefined) throw enoent();
    if (out instanceof Error) throw out;
    return { stdout: out };
  };
}

async function detect(outputs: Record<string, string | Error>, root = fsRoot(), platform: NodeJS.Platform = "linux", arch = "x64") {
  const warnings: string[] = [];
  const groups = await detectDevices({ run: recorded(outputs), root, platform, arch, warn: (m) => warnings.push(m) });
  return { groups, warnings };
}

const NVSMI = ["nvidia-smi", ...NVIDIA_SMI_ARGS].join(" ");
const ROCM = ["rocm-smi", ...ROCM_SMI_ARGS].join(" ");

describe("device detection", () => {
  test("nothing installed: no devices, no warnings", async () => {
    const { groups, warnings } = await detect({});
    assert.deepEqual(groups, []);
    assert.deepEqual(warnings, []);
  });

  test("NVIDIA 8×H100 from nvidia-smi CSV, minors from procfs, control nodes that exist", async () => {
    const root = fsRoot({
      "/dev/nvidiactl": "", "/dev/nvidia-uvm": "",
      // Minor numbers need not follow nvidia-smi's index: GPU 1 is /dev/nvidia3 here.
      "/proc/driver/nvidia/gpus/0000:2a:00.0/information": "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ: \t\t 0\nDevice Minor: \t 3\n",
    });
    const { groups, warnings } = await detect({ [NVSMI]: fixture("nvidia-smi-8xh100.csv") }, root);
    assert.deepEqual(warnings, []);
    assert.equal(groups.length, 1);
    const [g] = groups;
    assert.equal(g!.vendor, "nvidia");
    assert.equal(g!.type, "H100");
    assert.equal(g!.count, 8);
    assert.deepEqual(g!.devices[0], {
      index: 0, name: "NVIDIA H100 80GB HBM3", memoryMiB: 81559, memoryFreeMiB: 81004,
      uuid: "GPU-9d7c0a5e-3b1f-6c2a-8e41-0f7d2b6c9a13", nodes: ["/dev/nvidia0"],
    });
    assert.deepEqual(g!.devices[1]!.nodes, ["/dev/nvidia3"]);
    assert.equal(g!.devices[2]!.memoryFreeMiB, 1467);
    assert.deepEqual(g!.controlNodes, ["/dev/nvidiactl", "/dev/nvidia-uvm"]);
    assert.deepEqual(gpuInventory(groups), [{ type: "H100", count: 8 }]);
  });

  test("NVIDIA mixed machine: one group per type, [N/A] free memory omitted", async () => {
    const { groups, warnings } = await detect({ [NVSMI]: fixture("nvidia-smi-mixed.csv") });
    assert.deepEqual(warnings, []);
    assert.deepEqual(gpuInventory(groups), [{ type: "A100-40", count: 1 }, { type: "L4", count: 1 }]);
    assert.equal(groups[1]!.devices[0]!.memoryFreeMiB, undefined);
    assert.equal(groups[1]!.devices[0]!.index, 1);
  });

  test("nvidia-smi failing (driver missing) or garbage: no devices and a warning", async () => {
    const failed = Object.assign(new Error(`Command failed: nvidia-smi\n${fixture("nvidia-smi-driver-missing.txt")}`), { code: 9 });
    const a = await detect({ [NVSMI]: failed });
    assert.deepEqual(a.groups, []);
    assert.match(a.warnings.join("\n"), /nvidia-smi .* failed/);
    const b = await detect({ [NVSMI]: "this is not csv\n\u0000\u0001 garbage, , ,\n" });
    assert.deepEqual(b.groups, []);
    assert.ok(b.warnings.length >= 1);
  });

  test("AMD 8×MI300X from rocm-smi JSON with VRAM and render nodes from sysfs", async () => {
    const root = fsRoot({ "/dev/kfd": "", "/sys/class/drm/card0/device/drm/renderD128": "", "/sys/class/drm/card1/device/drm/renderD136": "" });
    const { groups, warnings } = await detect({ [ROCM]: fixture("rocm-smi-mi300x.json") }, root);
    assert.deepEqual(warnings, []);
    assert.equal(groups.length, 1);
    const g = groups[0]!;
    assert.equal(g.type, "MI300X");
    assert.equal(g.count, 8);
    assert.equal(g.devices[0]!.memoryMiB, 196592);
    assert.equal(g.devices[3]!.memoryFreeMiB, 53232);
    assert.deepEqual(g.devices[1]!.nodes, ["/dev/dri/renderD136"]);
    assert.deepEqual(g.devices[7]!.nodes, ["/dev/dri/renderD135"]);
    assert.deepEqual(g.controlNodes, ["/dev/kfd"]);
    assert.deepEqual(g.visibleEnv, ["ROCR_VISIBLE_DEVICES"]);
  });

  test("AMD via sysfs when rocm-smi is missing; radeon-era cards and other vendors skipped", async () => {
    const root = fsRoot({
      "/dev/kfd": "",
      "/sys/class/drm/card0/device/vendor": "0x1a03\n", // ASPEED BMC display
      "/sys/class/drm/card1/device/vendor": "0x1002\n",
      "/sys/class/drm/card1/device/device": "0x74a1\n",
      "/sys/class/drm/card1/device/mem_info_vram_total": "206141652992\n",
      "/sys/class/drm/card1/device/mem_info_vram_used": "1073741824\n",
      "/sys/class/drm/card1/device/drm/renderD128": "",
      "/sys/class/drm/card1-DP-1/device/vendor": "0x1002\n",
      "/sys/class/drm/card2/device/vendor": "0x1002\n", // no VRAM counters: not amdgpu compute
    });
    const { groups, warnings } = await detect({}, root);
    assert.deepEqual(warnings, []);
    assert.equal(groups.length, 1);
    assert.deepEqual(groups[0]!.devices, [{ index: 1, name: "AMD GPU 0x74a1", memoryMiB: 196592, memoryFreeMiB: 195568, nodes: ["/dev/dri/renderD128"] }]);
  });

  test("rocm-smi on a desktop: the discrete RX 6800 counts, the Raphael APU does not", async () => {
    const { groups, warnings } = await detect({ [ROCM]: fixture("rocm-smi-rx6800-raphael.json") }, fsRoot({ "/dev/kfd": "" }));
    assert.deepEqual(warnings, []);
    assert.equal(groups.length, 1);
    assert.deepEqual(groups[0]!.devices.map((d) => [d.index, d.name, d.memoryMiB, d.memoryFreeMiB]), [[0, "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]", 16368, 15707]]);
    assert.deepEqual(groups[0]!.devices[0]!.nodes, ["/dev/dri/renderD128"]);
  });

  test("rocm-smi warning lines before the JSON are skipped", async () => {
    const noisy = `WARNING: AMD GPU device(s) is/are in a low-power state. Check power control/runtime_status\n\n${fixture("rocm-smi-mi300x.json")}`;
    const { groups, warnings } = await detect({ [ROCM]: noisy }, fsRoot({ "/dev/kfd": "" }));
    assert.deepEqual(warnings, []);
    assert.deepEqual(gpuInventory(groups), [{ type: "MI300X", count: 8 }]);
  });

  test("rocm-smi garbage: no devices and a warning", async () => {
    const { groups, warnings } = await detect({ [ROCM]: "WARNING: AMD GPU device(s) is/are in a low-power state\n{oops" });
    assert.deepEqual(groups, []);
    assert.match(warnings.join("\n"), /rocm-smi/);
  });

  test("Intel Max 1550 via xpu-smi discovery", async () => {
    const { groups, warnings } = await detect({ "xpu-smi discovery -j": fixture("xpu-smi-discovery-max1550.json") });
    assert.deepEqual(warnings, []);
    assert.equal(groups[0]!.vendor, "intel");
    assert.equal(groups[0]!.count, 4);
    assert.equal(groups[0]!.type, "Data Center GPU Max 1550");
    assert.deepEqual(groups[0]!.devices[1]!.nodes, ["/dev/dri/renderD130"]);
    assert.deepEqual(groups[0]!.visibleEnv, ["ZE_AFFINITY_MASK"]);
  });

  test("Intel via sysfs: a discrete Arc counts, integrated graphics do not", async () => {
    const root = fsRoot({
      "/sys/class/drm/card0/device/vendor": "0x8086\n", "/sys/class/drm/card0/device/device": "0x4680\n", // Alder Lake iGPU
      "/sys/class/drm/card1/device/vendor": "0x8086\n", "/sys/class/drm/card1/device/device": "0x56a0\n", // Arc A770
      "/sys/class/drm/card1/device/drm/renderD129": "",
      "/sys/class/drm/card2/device/vendor": "0x8086\n", "/sys/class/drm/card2/device/device": "0xe211\n", // Arc Pro B60
      "/sys/class/drm/card2/device/drm/renderD130": "",
    });
    const { groups } = await detect({}, root);
    assert.deepEqual(gpuInventory(groups), [{ type: "ARC", count: 2 }]);
    assert.deepEqual(groups[0]!.devices.map((d) => [d.index, d.name]), [[0, "Intel Arc A-Series (0x56a0)"], [1, "Intel Arc B-Series (0xe211)"]]);
    assert.deepEqual(groups[0]!.devices[0]!.nodes, ["/dev/dri/renderD129"]);
  });

  test("xpu-smi garbage: no devices and a warning", async () => {
    const { groups, warnings } = await detect({ "xpu-smi discovery -j": "Error: Level Zero initialization failed" });
    assert.deepEqual(groups, []);
    assert.match(warnings.join("\n"), /xpu-smi/);
  });

  test("Apple Silicon: one MPS device on darwin/arm64 only", async () => {
    const outputs = {
      "sysctl -n machdep.cpu.brand_string": fixture("sysctl-brand-m2max.txt"),
      "sysctl -n hw.memsize": "103079215104\n",
      "system_profiler SPDisplaysDataType -json": fixture("system_profiler-m2max.json"),
    };
    const mac = await detect(outputs, fsRoot(), "darwin", "arm64");
    assert.deepEqual(mac.warnings, []);
    assert.deepEqual(mac.groups, [{
      vendor: "apple", type: "MPS", count: 1, controlNodes: [], visibleEnv: [],
      devices: [{ index: 0, name: "Apple M2 Max (38-core GPU)", memoryMiB: 98304, nodes: [] }],
    }]);
    assert.deepEqual((await detect(outputs, fsRoot(), "darwin", "x64")).groups, []);
    assert.deepEqual((await detect(outputs, fsRoot(), "linux", "arm64")).groups, []);
    const garbage = await detect({ ...outputs, "system_profiler SPDisplaysDataType -json": "<plist>" }, fsRoot(), "darwin", "arm64");
    assert.equal(garbage.groups[0]!.devices[0]!.name, "Apple M2 Max");
    assert.match(garbage.warnings.join("\n"), /system_profiler/);
  });

  test("TPU from /dev/accel*, skipping accel devices of other vendors", async () => {
    const root = fsRoot({
      "/dev/accel0": "", "/dev/accel1": "", "/dev/accel2": "", "/dev/accel3": "",
      "/sys/class/accel/accel0/device/vendor": "0x1ae0\n", "/sys/class/accel/accel0/device/device": "0x005e\n",
      "/sys/class/accel/accel3/device/vendor": "0x1da3\n", // Habana
    });
    const { groups } = await detect({}, root);
    assert.deepEqual(gpuInventory(groups), [{ type: "TPU", count: 3 }]);
    assert.equal(groups[0]!.devices[0]!.name, "Google TPU (0x005e)");
    assert.deepEqual(groups[0]!.devices.map((d) => d.nodes[0]), ["/dev/accel0", "/dev/accel1", "/dev/accel2"]);
  });

  test("AWS Neuron from /dev/neuron* with neuron-ls details; garbage neuron-ls still counts nodes", async () => {
    const root = fsRoot(Object.fromEntries([0, 1, 2, 3, 4, 5].map((i) => [`/dev/neuron${i}`, ""])));
    const { groups, warnings } = await detect({ "neuron-ls --json-output": fixture("neuron-ls-inf2.json") }, root);
    assert.deepEqual(warnings, []);
    assert.deepEqual(gpuInventory(groups), [{ type: "NEURON", count: 6 }]);
    assert.deepEqual(groups[0]!.devices[5], { index: 5, name: "AWS Neuron (2 NeuronCores)", memoryMiB: 32768, nodes: ["/dev/neuron5"] });
    const bad = await detect({ "neuron-ls --json-output": "neuron-ls: command crashed" }, root);
    assert.equal(bad.groups[0]!.count, 6);
    assert.match(bad.warnings.join("\n"), /neuron-ls/);
  });

  test("a detector that throws is a warning", async () => {
    const warnings: string[] = [];
    const groups = await detectDevices({ detectors: [{ name: "boom", detect: async () => { throw new Error("kaput"); } }], warn: (m) => warnings.push(m) });
    assert.deepEqual(groups, []);
    assert.deepEqual(warnings, ["boom device detection failed: kaput"]);
  });

  test("product names map to the scheduler's GPU types", () => {
    const cases: [string, number, string][] = [
      ["NVIDIA H100 80GB HBM3", 81559, "H100"], ["NVIDIA H100 PCIe", 81559, "H100"], ["NVIDIA H200", 143771, "H200"],
      ["NVIDIA GH200 480GB", 97871, "GH200"], ["NVIDIA A100-SXM4-80GB", 81920, "A100-80"], ["NVIDIA A100-PCIE-40GB", 40960, "A100-40"],
      ["NVIDIA A10G", 23028, "A10G"], ["NVIDIA A10", 23028, "A10"], ["Tesla T4", 15360, "T4"], ["NVIDIA L4", 23034, "L4"],
      ["NVIDIA L40S", 46068, "L40S"], ["NVIDIA GeForce RTX 4090", 24564, "RTX4090"], ["NVIDIA RTX 6000 Ada Generation", 49140, "RTX6000Ada"],
      ["NVIDIA RTX A6000", 49140, "A6000"], ["Tesla V100-SXM2-32GB", 32768, "V100-32"], ["Tesla V100-SXM2-16GB", 16384, "V100"],
      ["AMD Instinct MI300X OAM", 196592, "MI300X"], ["AMD Instinct MI250X", 65520, "MI250"], ["NVIDIA B200", 183359, "B200"],
      ["NVIDIA Quadro P1000", 4096, "Quadro P1000"],
    ];
    for (const [name, mem, type] of cases) assert.equal(gpuTypeOf(name, mem), type, name);
  });
});

describe("device allocation", () => {
  const h100 = async () => (await detect({ [NVSMI]: fixture("nvidia-smi-8xh100.csv") }, fsRoot({ "/dev/nvidiactl": "" }))).groups;

  test("assigns distinct devices, their nodes plus control nodes, and UUID env; release frees them", async () => {
    const alloc = new DeviceAllocator(await h100());
    const a = alloc.allocate("c1", ["H100"], 2, true);
    assert.deepEqual(a.indices, [0, 1]);
    assert.deepEqual(a.nodes, ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"]);
    assert.equal(a.env.CUDA_VISIBLE_DEVICES, "GPU-9d7c0a5e-3b1f-6c2a-8e41-0f7d2b6c9a13,GPU-1b2e6f40-7a9c-d3e1-5f08-c4a6b2e97d35");
    assert.equal(a.env.NVIDIA_VISIBLE_DEVICES, a.env.CUDA_VISIBLE_DEVICES);
    const b = alloc.allocate("c2", ["any"], 6, true);
    assert.deepEqual(b.indices, [2, 3, 4, 5, 6, 7]);
    assert.deepEqual(alloc.usage(), { total: 8, free: 0 });
    assert.throws(() => alloc.allocate("c3", ["H100"], 1, true), /no 1 free GPU\(s\) of type H100 on this worker \(H100: 0\/8 free\)/);
    alloc.release("c1");
    assert.deepEqual(alloc.allocate("c3", [], 1, true).indices, [0]);
    assert.throws(() => alloc.allocate("c4", ["A10G"], 1, true), /of type A10G/);
  });

  test("index env: renumbered from 0 when the runtime isolates, host indices when it does not", async () => {
    const root = fsRoot({ "/dev/kfd": "" });
    const { groups } = await detect({ [ROCM]: fixture("rocm-smi-mi300x.json") }, root);
    const alloc = new DeviceAllocator(groups);
    alloc.allocate("first", ["MI300X"], 3, true);
    assert.deepEqual(alloc.allocate("iso", ["MI300X"], 2, true).env, { ROCR_VISIBLE_DEVICES: "0,1" });
    assert.deepEqual(alloc.allocate("proc", ["MI300X"], 2, false).env, { ROCR_VISIBLE_DEVICES: "5,6" });
  });
});
