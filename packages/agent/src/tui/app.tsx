/**
 * The live dashboard (the seed's TUI plus its TODO "interactive TUI with log viewing"): machine
 * status and host figures on top, the worker's containers below; ↑/↓ select, Enter opens the
 * selected container's live log, Esc or q goes back, q on the list (or Ctrl+C) quits.
 */
import { useEffect, useRef, useState } from "react";
import { Box, Text, render, useInput, useStdout, type Instance } from "ink";
import type { LogLine } from "@beta9/protocol";
import type { AgentSnapshot, ContainerView } from "../agent.js";
import { formatAgo, formatDuration, pad } from "./format.js";

/** What the dashboard reads; the Agent implements it. */
export interface AgentSource {
  snapshot(): AgentSnapshot;
  containerLogs(id: string): LogLine[];
  on(event: "change", listener: () => void): unknown;
  on(event: "log", listener: (id: string, line: LogLine) => void): unknown;
  off(event: "change", listener: () => void): unknown;
  off(event: "log", listener: (id: string, line: LogLine) => void): unknown;
}

export interface AppProps {
  source: AgentSource;
  colors: boolean;
  onQuit: () => void;
  /** Re-render period for clocks (uptime, "ago"); events re-render sooner. */
  tickMs?: number;
}

const STATE_COLORS: Record<string, string> = { READY: "green", REGISTERING: "yellow", STARTING: "yellow", RECONNECTING: "red", STOPPING: "yellow", STOPPED: "red" };
const CONTAINER_COLORS: Record<string, string> = { RUNNING: "green", PENDING: "yellow", STOPPING: "yellow", EXITED: "gray" };

/** Re-renders on agent events (at most every 100 ms) and on a clock tick. */
function useSnapshot(source: AgentSource, tickMs: number): AgentSnapshot {
  const [snap, setSnap] = useState(() => source.snapshot());
  useEffect(() => {
    let pending: NodeJS.Timeout | undefined;
    const refresh = () => {
      pending ??= setTimeout(() => {
        pending = undefined;
        // A fresh object: a log line changes no snapshot field, yet the log view must redraw.
        setSnap({ ...source.snapshot() });
      }, 100);
    };
    source.on("change", refresh);
    source.on("log", refresh);
    const tick = setInterval(() => setSnap({ ...source.snapshot() }), tickMs);
    return () => {
      source.off("change", refresh);
      source.off("log", refresh);
      clearInterval(tick);
      clearTimeout(pending);
    };
  }, [source, tickMs]);
  return snap;
}

function containerLine(c: ContainerView, now: number): string {
  const ran = formatDuration((c.endedAt ?? now) - c.createdAt);
  const when = c.endedAt !== undefined ? `  (${formatAgo(c.endedAt, now)})` : "";
  const state = c.state === "EXITED" ? (c.reason === "exited" && c.exitCode === 0 ? "COMPLETED" : c.reason === "stopped" ? "STOPPED" : "FAILED") : c.state;
  const gpus = c.gpuIndices.length > 0 ? `  gpu ${c.gpuIndices.join(",")}` : "";
  return `${pad(c.id, 22)} ${pad(state, 10)} ${pad(c.label, 28)} ${pad(ran, 8)}${when}${gpus}`;
}

function Header({ snap, colors, now }: { snap: AgentSnapshot; colors: boolean; now: number }) {
  const color = colors ? STATE_COLORS[snap.status] : undefined;
  const gpuTypes = snap.gpuTypes.map((g) => `${g.count}x ${g.type}`).join(", ");
  return (
    <Box flexDirection="column">
      <Text bold>Beta9 Agent: {snap.machineId || "(not registered yet)"}</Text>
      <Text>
        Status: <Text {...(color && { color })} bold>{snap.status}</Text> │ Gateway: {snap.gateway.replace(/^https?:\/\//, "")} │ Pool: {snap.pool} │ Uptime: {formatDuration(now - snap.startedAt)}
      </Text>
      <Text>
        CPU: {snap.cpuPercent.toFixed(1)}% │ Memory: {snap.memoryPercent.toFixed(1)}% │ Disk: {snap.diskPercent.toFixed(1)}% │ GPUs: {snap.gpus.total}
        {snap.gpus.total > 0 ? ` (${snap.gpus.free} free${gpuTypes ? `, ${gpuTypes}` : ""})` : ""} │ Last Heartbeat: {formatAgo(snap.lastKeepaliveAt, now)} │ Worker: {snap.workerConnected ? "connected" : "disconnected"}
      </Text>
      {snap.lastError && snap.status !== "READY" ? <Text {...(colors && { color: "red" })}>Last error: {snap.lastError}</Text> : null}
    </Box>
  );
}

function ContainerList({ snap, selected, colors, now }: { snap: AgentSnapshot; selected: number; colors: boolean; now: number }) {
  return (
    <Box flexDirection="column" marginTop={1}>
      <Text bold>WORKER CONTAINERS ({snap.containers.filter((c) => c.state !== "EXITED").length} running)</Text>
      {snap.containers.length === 0 ? <Text dimColor={colors}>  no containers yet; they appear here when the gateway places work on this machine</Text> : null}
      {snap.containers.map((c, i) => {
        const color = colors ? CONTAINER_COLORS[c.state] : undefined;
        return (
          <Text key={c.id} inverse={colors && i === selected} {...(color && { color })}>
            {i === selected ? "› " : "  "}{containerLine(c, now)}
          </Text>
        );
      })}
      <Box marginTop={1}><Text dimColor={colors}>↑/↓ select · Enter view log · q quit</Text></Box>
    </Box>
  );
}

function LogView({ source, container, colors, rows }: { source: AgentSource; container: ContainerView; colors: boolean; rows: number }) {
  const lines = source.containerLogs(container.id).slice(-Math.max(5, rows));
  return (
    <Box flexDirection="column" marginTop={1}>
      <Text bold>LOG {container.id} ({container.label}) — {container.state}</Text>
      {lines.length === 0 ? <Text dimColor={colors}>  (no output yet)</Text> : null}
      {lines.map((l, i) => (
        <Text key={i} {...(colors && l.stream === "stderr" && { color: "red" })}>{l.line}</Text>
      ))}
      <Box marginTop={1}><Text dimColor={colors}>Esc/q back · following live</Text></Box>
    </Box>
  );
}

export function App({ source, colors, onQuit, tickMs = 1000 }: AppProps) {
  const snap = useSnapshot(source, tickMs);
  // Keys can arrive faster than renders and effects (a paste, a test): the key handler reads and
  // writes refs, so it always sees the latest selection and view, and state only drives rendering.
  const [selected, setSelectedState] = useState(0);
  const [viewing, setViewingState] = useState<string | undefined>(undefined);
  const ui = useRef<{ selected: number; viewing: string | undefined }>({ selected: 0, viewing: undefined });
  const latest = useRef(snap);
  latest.current = snap;
  const { stdout } = useStdout();
  const count = snap.containers.length;
  useInput((input, key) => {
    const state = ui.current;
    const containers = latest.current.containers;
    if (key.ctrl && input === "c") return onQuit();
    if (state.viewing !== undefined) {
      if (key.escape || input === "q") setViewingState((state.viewing = undefined));
      return;
    }
    if (key.upArrow) setSelectedState((state.selected = Math.max(0, state.selected - 1)));
    else if (key.downArrow) setSelectedState((state.selected = Math.min(Math.max(0, containers.length - 1), state.selected + 1)));
    else if (key.return && containers[state.selected]) setViewingState((state.viewing = containers[state.selected]!.id));
    else if (input === "q") onQuit();
  });
  const now = Date.now();
  const shown = viewing !== undefined ? snap.containers.find((c) => c.id === viewing) : undefined;
  return (
    <Box flexDirection="column" borderStyle="double" paddingX={1}>
      <Header snap={snap} colors={colors} now={now} />
      {shown
        ? <LogView source={source} container={shown} colors={colors} rows={(stdout.rows ?? 30) - 10} />
        : <ContainerList snap={snap} selected={Math.min(selected, Math.max(0, count - 1))} colors={colors} now={now} />}
    </Box>
  );
}

/** Mounts the dashboard on the terminal; Ctrl+C and q call onQuit (the caller stops the agent). */
export function renderDashboard(source: AgentSource, onQuit: () => void): Instance {
  const colors = Boolean(process.stdout.isTTY) && process.env.NO_COLOR === undefined;
  return render(<App source={source} colors={colors} onQuit={onQuit} />, { exitOnCtrlC: false });
}
