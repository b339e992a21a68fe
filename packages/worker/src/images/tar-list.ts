/**
 * Lists a layer's entries while its bytes stream past, so a layer can be checked before GNU tar
 * extracts it. The reading itself is the shared strict reader (@beta9/protocol/tar-reader), which
 * reads names exactly as GNU tar does and refuses whatever the two could read differently.
 */
import { Transform, type TransformCallback } from "node:stream";
import { TarReader, type TarEntry } from "@beta9/protocol/tar-reader";

export { TarFormatError, type TarEntry, type TarEntryType } from "@beta9/protocol/tar-reader";

export class TarLister extends Transform {
  readonly entries: TarEntry[] = [];
  private readonly reader = new TarReader((entry) => this.entries.push(entry));

  /** Offset just past the first zero block (where tar stops), or undefined if there was none. */
  get archiveEnd(): number | undefined {
    return this.reader.end;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      this.reader.push(chunk);
      done(null, chunk);
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      this.reader.finish();
      done();
    } catch (err) {
      done(err as Error);
    }
  }
}
