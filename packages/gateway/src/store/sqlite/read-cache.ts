/**
 * In-memory caches for the hottest reads. Only correct because the SQLite store is the single
 * writer of its file (the gateway locks its data directory): every write goes through the
 * repository that owns the cache and invalidates it. A shared backend (Postgres with several
 * gateways) must not reuse this without cross-process invalidation.
 */

/** Values per workspace, dropped wholesale when that workspace's rows change. */
export class WorkspaceCache<V> {
  private readonly byWorkspace = new Map<string, Map<string, V>>();

  constructor(private readonly maxKeysPerWorkspace = 256) {}

  get(workspaceId: string, key: string): V | undefined {
    return this.byWorkspace.get(workspaceId)?.get(key);
  }

  set(workspaceId: string, key: string, value: V): V {
    let entries = this.byWorkspace.get(workspaceId);
    if (!entries) this.byWorkspace.set(workspaceId, (entries = new Map()));
    // Bounded: many distinct filters (limits, offsets, names) must not grow memory without end.
    if (entries.size >= this.maxKeysPerWorkspace) entries.clear();
    entries.set(key, value);
    return value;
  }

  invalidate(workspaceId: string): void {
    this.byWorkspace.delete(workspaceId);
  }
}

/** A bounded map that forgets everything when full: cheap, and a miss only costs a query. */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(private readonly maxEntries: number) {}

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    if (this.map.size >= this.maxEntries) this.map.clear();
    this.map.set(key, value);
  }

  clear(): void {
    this.map.clear();
  }
}
