import assert from "node:assert/strict";
import { test } from "node:test";
import { TypedEmitter } from "./events.js";

interface Events {
  placed: { containerId: string; workerId: string };
  worker_lost: string;
}

test("listeners get their event's payload, in order, until they unsubscribe", () => {
  const events = new TypedEmitter<Events>();
  const seen: string[] = [];
  const off = events.on("placed", (e) => seen.push(`a:${e.containerId}@${e.workerId}`));
  events.on("placed", (e) => seen.push(`b:${e.containerId}`));
  events.on("worker_lost", (id) => seen.push(`lost:${id}`));
  events.emit("placed", { containerId: "c1", workerId: "w1" });
  off();
  events.emit("placed", { containerId: "c2", workerId: "w1" });
  events.emit("worker_lost", "w1");
  assert.deepEqual(seen, ["a:c1@w1", "b:c1", "b:c2", "lost:w1"]);
  assert.equal(events.listenerCount("placed"), 1);
});

test("keyed per entity: a listener that removes itself while its event is emitted does not stop the others", () => {
  const events = new TypedEmitter<Record<string, number>>();
  const seen: number[] = [];
  const once = (n: number) => {
    seen.push(n);
    events.off("task-1", once);
  };
  events.on("task-1", once);
  events.on("task-1", (n) => seen.push(n * 10));
  events.emit("task-1", 1);
  events.emit("task-1", 2);
  events.emit("task-2", 3);
  assert.deepEqual(seen, [1, 10, 20]);
  assert.equal(events.listenerCount("task-2"), 0);
});
