/**
 * A small typed event emitter for the gateway's events: one map per emitter from each event's key
 * to its payload, so a listener's argument is checked where it subscribes and where it is emitted
 * (node's EventEmitter types neither). Keys may be a fixed set (`{ placed: …; worker_lost: … }`)
 * or open, one per entity (`Record<string, Task>`: a task's changes under its id).
 *
 * Listeners run synchronously in subscription order, as with EventEmitter; one added or removed
 * during an emit takes effect from the next emit.
 */
export class TypedEmitter<Events> {
  private readonly listeners = new Map<keyof Events, Set<(event: never) => void>>();

  /** Subscribes; returns the unsubscribe function (or call off). */
  on<K extends keyof Events>(key: K, listener: (event: Events[K]) => void): () => void {
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(listener as (event: never) => void);
    return () => this.off(key, listener);
  }

  off<K extends keyof Events>(key: K, listener: (event: Events[K]) => void): void {
    const set = this.listeners.get(key);
    if (!set) return;
    set.delete(listener as (event: never) => void);
    if (set.size === 0) this.listeners.delete(key);
  }

  emit<K extends keyof Events>(key: K, event: Events[K]): void {
    const set = this.listeners.get(key);
    if (!set) return;
    for (const listener of [...set]) (listener as (event: Events[K]) => void)(event);
  }

  /** The keys that have listeners now. */
  keys(): (keyof Events)[] {
    return [...this.listeners.keys()];
  }

  listenerCount(key: keyof Events): number {
    return this.listeners.get(key)?.size ?? 0;
  }

  removeAll(): void {
    this.listeners.clear();
  }
}
