/** Images and their builds: status, size, and the build log (followed live while it builds). */
import { useEffect, useState } from "preact/hooks";
import { api, stream } from "../api.js";
import { ago, Badge, bytes, Json, Loading, Section, short, Table, useResource, useStickToBottom } from "../ui.js";

function BuildLog({ image }: { image: any }) {
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState("loading");
  const { ref, onScroll } = useStickToBottom<HTMLPreElement>(lines);
  useEffect(() => {
    const ac = new AbortController();
    setLines([]);
    const path = `/image/${encodeURIComponent(image.id)}/logs`;
    const text = (e: any) => (typeof e === "string" ? e : e.line ?? JSON.stringify(e));
    if (image.status === "building") {
      setState("following");
      stream(`${path}?follow=true`, (event, data) => {
        if (event === "log") setLines((l) => [...l, text(data)].slice(-5000));
        else if (event === "end") setState("ended");
      }, ac.signal).catch((err: Error) => !ac.signal.aborted && setState(`error: ${err.message}`));
    } else {
      api("GET", path, undefined, ac.signal).then((r) => {
        setLines((r.items ?? r.lines ?? []).map(text));
        setState("complete");
      }, (err: Error) => !ac.signal.aborted && setState(`error: ${err.message}`));
    }
    return () => ac.abort();
  }, [image.id, image.status]);
  return (
    <>
      <p class="muted small" role="status">Build log of <code>{short(image.id)}</code>: {state}, {lines.length} lines</p>
      <pre class="logs fit" ref={ref} onScroll={onScroll} tabIndex={0} aria-label="Build log">{lines.join("\n")}</pre>
    </>
  );
}

export function Images({ selected }: { selected?: string | undefined }) {
  const list = useResource(async (signal) => (await api("GET", "/image?limit=200", undefined, signal)).items as any[], [], 5000);
  const image = list.data?.find((i) => i.id === selected);
  return (
    <>
      <h1>Images</h1>
      <Section title="Images and builds">
        {!list.data ? <Loading error={list.error} what="images" />
          : <Table caption="Images" empty="No image has been built. `beta9 deploy` builds what a workload's image asks for."
              head={["Image", "Status", "Base", "Steps", "Size", "Created", ""]}
              rows={list.data.map((i) => [
                <code title={i.id}>{short(i.id)}</code>, <Badge value={i.status} />,
                i.spec?.base ? (i.spec.base.ref ?? i.spec.base.kind ?? "—") : "—", i.spec?.steps?.length ?? 0,
                typeof i.size === "number" && i.status === "ready" ? bytes(i.size) : "—", ago(i.createdAt),
                <a href={`#/images/${i.id}`} aria-label={`Build log of image ${i.id}`}>build log</a>,
              ])} />}
      </Section>
      {image && (
        <Section title={`Image ${short(image.id)}`}>
          {image.error && <p role="alert" class="error">{image.error}</p>}
          <details><summary>Spec</summary><Json value={image.spec} label="Image spec" /></details>
          <BuildLog image={image} />
        </Section>
      )}
    </>
  );
}
