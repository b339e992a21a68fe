/** Images on SQLite: one row per image id (a spec hash), linked to each workspace that asked for it. */
import type Database from "better-sqlite3";
import type { Image, ImageStatus } from "@beta9/protocol";
import type { ImageRepo, Page } from "../types.js";
import { now } from "./rows.js";

export interface ImageRow {
  id: string; spec: string; status: string; size: number | null; sha256: string | null; error: string | null;
  created_at: string; updated_at: string;
}

export const toImage = (r: ImageRow): Image => ({
  id: r.id, status: r.status as ImageStatus, spec: JSON.parse(r.spec), size: r.size, sha256: r.sha256, error: r.error,
  createdAt: r.created_at, updatedAt: r.updated_at,
});

export class SqliteImageRepo implements ImageRepo {
  private readonly byId;
  private readonly inWorkspace;
  private readonly insert;
  private readonly link;
  private readonly restart;
  private readonly listStmt;
  private readonly ready;
  private readonly failed;
  private readonly interrupted;
  private readonly bytesStmt;
  private readonly unlinkStmt;
  private readonly linksStmt;
  private readonly deleteStmt;

  constructor(private readonly db: Database.Database) {
    this.byId = db.prepare(`SELECT * FROM image WHERE id = ?`);
    this.inWorkspace = db.prepare(
      `SELECT i.* FROM image i JOIN workspace_image w ON w.image_id = i.id WHERE w.workspace_id = ? AND i.id = ?`,
    );
    this.insert = db.prepare(`INSERT INTO image (id, spec, status, created_at, updated_at) VALUES (?, ?, 'building', ?, ?)`);
    this.link = db.prepare(`INSERT INTO workspace_image (workspace_id, image_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`);
    this.restart = db.prepare(`UPDATE image SET status = 'building', error = NULL, updated_at = ? WHERE id = ? AND status = 'failed'`);
    this.listStmt = db.prepare(
      `SELECT i.* FROM image i JOIN workspace_image w ON w.image_id = i.id WHERE w.workspace_id = ?
       ORDER BY i.created_at DESC, i.id LIMIT ? OFFSET ?`,
    );
    this.ready = db.prepare(`UPDATE image SET status = 'ready', size = ?, sha256 = ?, error = NULL, updated_at = ? WHERE id = ?`);
    this.failed = db.prepare(`UPDATE image SET status = 'failed', error = ?, updated_at = ? WHERE id = ? AND status = 'building'`);
    this.bytesStmt = db.prepare(
      `SELECT COALESCE(SUM(i.size), 0) AS n FROM image i JOIN workspace_image w ON w.image_id = i.id WHERE w.workspace_id = ? AND i.status = 'ready'`,
    );
    this.unlinkStmt = db.prepare(`DELETE FROM workspace_image WHERE workspace_id = ? AND image_id = ?`);
    this.linksStmt = db.prepare(`SELECT COUNT(*) AS n FROM workspace_image WHERE image_id = ?`);
    this.deleteStmt = db.prepare(`DELETE FROM image WHERE id = ?`);
    this.interrupted = db.prepare(
      `UPDATE image SET status = 'failed', error = 'the gateway stopped during the build; request it again', updated_at = ? WHERE status = 'building'`,
    );
  }

  async request(workspaceId: string, id: string, spec: unknown) {
    return this.db.transaction(() => {
      const ts = now();
      const existing = this.byId.get(id) as ImageRow | undefined;
      let build = false;
      if (!existing) {
        this.insert.run(id, JSON.stringify(spec), ts, ts);
        build = true;
      } else if (existing.status === "failed") {
        build = this.restart.run(ts, id).changes === 1;
      }
      this.link.run(workspaceId, id, ts);
      return { image: toImage(this.byId.get(id) as ImageRow), build };
    }).immediate();
  }

  async get(workspaceId: string, id: string) {
    const row = this.inWorkspace.get(workspaceId, id) as ImageRow | undefined;
    return row && toImage(row);
  }

  async getAny(id: string) {
    const row = this.byId.get(id) as ImageRow | undefined;
    return row && toImage(row);
  }

  async list(workspaceId: string, page: Page) {
    return (this.listStmt.all(workspaceId, page.limit, page.offset) as ImageRow[]).map(toImage);
  }

  async bytes(workspaceId: string) {
    return (this.bytesStmt.get(workspaceId) as { n: number }).n;
  }

  async unlink(workspaceId: string, id: string) {
    return this.db.transaction((): "absent" | "building" | "unlinked" | "orphaned" => {
      const row = this.inWorkspace.get(workspaceId, id) as ImageRow | undefined;
      if (!row) return "absent";
      if (row.status === "building") return "building";
      this.unlinkStmt.run(workspaceId, id);
      if ((this.linksStmt.get(id) as { n: number }).n > 0) return "unlinked";
      this.deleteStmt.run(id);
      return "orphaned";
    }).immediate();
  }

  async markReady(id: string, size: number, sha256: string) {
    this.ready.run(size, sha256, now(), id);
  }

  async markFailed(id: string, error: string) {
    this.failed.run(error, now(), id);
  }

  async failInterrupted() {
    return this.interrupted.run(now()).changes;
  }

  /** One gateway writes this store: no other gateway's builds to fail, none to hand builds to. */
  async failOrphaned() {
    return 0;
  }

  async offer() {
    return false;
  }

  async takeOffered() {
    return undefined;
  }

  async withdraw() {
    return false;
  }

  onOffered(): () => void {
    return () => {};
  }
}
