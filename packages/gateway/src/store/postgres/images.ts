/** Images on Postgres: one row per image id (a spec hash), linked to each workspace that asked for it. */
import type { ImageRepo, Page } from "../types.js";
import { toImage, type ImageRow } from "../sqlite/images.js";
import { now } from "../sqlite/rows.js";
import type { Db } from "./db.js";
import type { GatewayPresence } from "./tasks.js";
import { noticeIds } from "./notices.js";

/** Image rows in the SQLite row shape (the spec as JSON text). */
const IMAGE_COLUMNS = "i.id, i.spec::text AS spec, i.status, i.size, i.sha256, i.error, i.created_at, i.updated_at";

/** NOTIFY channel of builds offered to the gateways that have workers: payload `<gateway id> <image id>`. */
export const IMAGE_OFFERED_CHANNEL = "beta9_image_offered";
/** The owner of a build offered and not taken yet: `offered:<offering gateway's id>`. */
const OFFERED = "offered:";
/** A build's gateway, offered or not. */
const OWNER = `COALESCE(substring(gateway_id from '^offered:(.*)$'), gateway_id)`;

export class PostgresImageRepo implements ImageRepo {
  private readonly offeredListeners = new Set<() => void>();

  constructor(private readonly db: Db, private readonly presence: GatewayPresence) {}

  async offer(id: string) {
    return await this.db.run(
      `WITH offered AS (UPDATE image SET gateway_id = '${OFFERED}' || $2 WHERE id = $1 AND status = 'building' AND gateway_id = $2 RETURNING id)
       SELECT pg_notify('${IMAGE_OFFERED_CHANNEL}', $2::text || ' ' || id) FROM offered`,
      [id, this.presence.id],
    ) === 1;
  }

  async takeOffered() {
    return this.db.tx(async (q) => {
      const row = await q.row<{ id: string; spec: string }>(
        `UPDATE image SET gateway_id = $1 WHERE id = (
           SELECT id FROM image WHERE status = 'building' AND gateway_id LIKE '${OFFERED}%' AND gateway_id <> '${OFFERED}' || $1
             AND EXISTS (SELECT 1 FROM workspace_image w WHERE w.image_id = image.id)
           ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, spec::text AS spec`,
        [this.presence.id],
      );
      if (!row) return undefined;
      const link = await q.row<{ workspace_id: string }>(`SELECT workspace_id FROM workspace_image WHERE image_id = $1 ORDER BY created_at LIMIT 1`, [row.id]);
      // Every workspace let go of it meanwhile: the take rolls back (nobody to build it for).
      if (!link) throw new Error(`image ${row.id} was offered but no workspace uses it any more`);
      return { id: row.id, spec: JSON.parse(row.spec) as unknown, workspaceId: link.workspace_id };
    });
  }

  async withdraw(id: string) {
    return await this.db.run(`UPDATE image SET gateway_id = $2 WHERE id = $1 AND status = 'building' AND gateway_id = '${OFFERED}' || $2`, [id, this.presence.id]) === 1;
  }

  onOffered(listener: () => void): () => void {
    this.offeredListeners.add(listener);
    return () => this.offeredListeners.delete(listener);
  }

  /** An IMAGE_OFFERED_CHANNEL notification; this gateway's own are ignored. */
  notified(payload: string): void {
    if (noticeIds(payload, this.presence.id).length === 0) return;
    for (const listener of this.offeredListeners) listener();
  }

  /**
   * `build` is true for exactly one caller across gateways: the one whose insert created the row,
   * or whose update moved it from failed back to building (the row lock orders concurrent ones).
   */
  request(workspaceId: string, id: string, spec: unknown) {
    return this.db.tx(async (q) => {
      const ts = now();
      let build = await q.run(
        `INSERT INTO image (id, spec, status, created_at, updated_at, gateway_id) VALUES ($1, $2, 'building', $3, $3, $4) ON CONFLICT (id) DO NOTHING`,
        [id, JSON.stringify(spec), ts, this.presence.id],
      ) === 1;
      if (!build) {
        build = await q.run(`UPDATE image SET status = 'building', error = NULL, updated_at = $1, gateway_id = $3 WHERE id = $2 AND status = 'failed'`, [ts, id, this.presence.id]) === 1;
      }
      await q.run(`INSERT INTO workspace_image (workspace_id, image_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [workspaceId, id, ts]);
      const row = await q.row<ImageRow>(`SELECT ${IMAGE_COLUMNS} FROM image i WHERE i.id = $1`, [id]);
      return { image: toImage(row!), build };
    });
  }

  async get(workspaceId: string, id: string) {
    const row = await this.db.row<ImageRow>(
      `SELECT ${IMAGE_COLUMNS} FROM image i JOIN workspace_image w ON w.image_id = i.id WHERE w.workspace_id = $1 AND i.id = $2`, [workspaceId, id],
    );
    return row && toImage(row);
  }

  async getAny(id: string) {
    const row = await this.db.row<ImageRow>(`SELECT ${IMAGE_COLUMNS} FROM image i WHERE i.id = $1`, [id]);
    return row && toImage(row);
  }

  async list(workspaceId: string, page: Page) {
    const rows = await this.db.rows<ImageRow>(
      `SELECT ${IMAGE_COLUMNS} FROM image i JOIN workspace_image w ON w.image_id = i.id WHERE w.workspace_id = $1
       ORDER BY i.created_at DESC, i.id LIMIT $2 OFFSET $3`, [workspaceId, page.limit, page.offset],
    );
    return rows.map(toImage);
  }

  async bytes(workspaceId: string) {
    const row = await this.db.row<{ n: string }>(
      `SELECT COALESCE(SUM(i.size), 0)::text AS n FROM image i JOIN workspace_image w ON w.image_id = i.id WHERE w.workspace_id = $1 AND i.status = 'ready'`,
      [workspaceId],
    );
    return Number(row?.n ?? 0);
  }

  /** The image row is locked first, so that a concurrent request() (which updates it) is ordered before or after. */
  unlink(workspaceId: string, id: string) {
    return this.db.tx(async (q): Promise<"absent" | "building" | "unlinked" | "orphaned"> => {
      const image = await q.row<{ status: string }>(`SELECT status FROM image WHERE id = $1 FOR UPDATE`, [id]);
      if (!image) return "absent";
      if (image.status === "building") {
        return (await q.row(`SELECT 1 FROM workspace_image WHERE workspace_id = $1 AND image_id = $2`, [workspaceId, id])) ? "building" : "absent";
      }
      if (await q.run(`DELETE FROM workspace_image WHERE workspace_id = $1 AND image_id = $2`, [workspaceId, id]) === 0) return "absent";
      const left = await q.row<{ n: string }>(`SELECT COUNT(*)::text AS n FROM workspace_image WHERE image_id = $1`, [id]);
      if (Number(left?.n ?? 0) > 0) return "unlinked";
      await q.run(`DELETE FROM image WHERE id = $1`, [id]);
      return "orphaned";
    });
  }

  async markReady(id: string, size: number, sha256: string) {
    await this.db.run(`UPDATE image SET status = 'ready', size = $1, sha256 = $2, error = NULL, updated_at = $3 WHERE id = $4`, [size, sha256, now(), id]);
  }

  async markFailed(id: string, error: string) {
    await this.db.run(`UPDATE image SET status = 'failed', error = $1, updated_at = $2 WHERE id = $3 AND status = 'building'`, [error, now(), id]);
  }

  /**
   * As in the SQLite store. NOTE: with several gateways this also fails builds another gateway
   * is running; builds need an owner before gateways can share a database (issue 13).
   */
  /** This gateway's builds and offers (it is starting: they will never report), and those of gateways gone silent. */
  async failInterrupted() {
    return this.failWhere(`gateway_id IS NULL OR ${OWNER} = $2 OR`, [this.presence.id]);
  }

  /** Builds and offers of gateways that stopped or went silent meanwhile (their timers went with them). */
  async failOrphaned() {
    if (!this.presence.steady()) return 0;
    return this.failWhere(`${OWNER} <> $2 AND`, [this.presence.id]);
  }

  private failWhere(owner: string, params: unknown[]) {
    return this.db.run(
      `UPDATE image SET status = 'failed', error = 'the gateway stopped during the build; request it again', updated_at = $1
       WHERE status = 'building' AND (${owner} ${OWNER} NOT IN (SELECT id FROM gateway WHERE seen_at > now() - $3::int * interval '1 millisecond'))`,
      [now(), ...params, this.presence.staleAfterMs],
    );
  }
}
