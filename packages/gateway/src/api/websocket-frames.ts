/**
 * Just enough of RFC 6455 for a proxy that relays WebSocket bytes untouched: a meter that reads
 * frame headers as they pass (never the payloads, never unmasking) to bound message sizes, and the
 * close frames the proxy itself sends when it ends a socket.
 */
import { createHash, randomBytes } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The Sec-WebSocket-Accept answer to a client's Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/**
 * A close frame with `code` and `reason` (cut to the 123 bytes a control frame allows). Frames to a
 * server must be masked; a client's must not.
 */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  // Cut by characters, so the reason stays valid UTF-8 (a peer must refuse a broken one).
  let cut = reason;
  while (Buffer.byteLength(cut) > 123) cut = cut.slice(0, -1);
  const text = Buffer.from(cut, "utf8");
  const payload = Buffer.alloc(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const mask = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, payload]);
}

/**
 * Follows the frames of one direction of a socket. `feed` takes a chunk and says what of it may
 * pass now: everything up to a frame header not yet whole (held back, so a frame the proxy writes
 * never lands inside one) or up to the first frame that would make a message larger than
 * `maxMessageBytes` (`violated`), or to the first frame that breaks the framing the count relies on
 * (`problem`). Fragmented messages count as a whole; control frames (at most 125 bytes each,
 * interleaved or not) do not count.
 */
export class FrameMeter {
  /** Payload bytes of the current frame still to pass. */
  private remaining = 0;
  /** The start of a frame header split across chunks (at most 13 bytes), not passed yet. */
  private partial: Buffer | undefined;
  /** Bytes of the data message being received (its frames so far). */
  private messageBytes = 0;
  /** A data message's first frame came without FIN: continuations (and control frames) until one with FIN. */
  private fragmented = false;
  /** The size of the message that broke the limit (for the close reason). */
  offending = 0;
  /** Set when a frame broke the protocol rather than the size limit (close 1002 with this reason). */
  problem: string | undefined;

  constructor(private readonly maxMessageBytes: number) {}

  /**
   * RFC 6455 section 5.4/5.5 rules a size meter depends on: a control frame is one frame of at most
   * 125 bytes (a 64 MiB "ping" is no control frame), a new data message never starts inside a
   * fragmented one (it would reset the count), and a continuation belongs to a started message.
   */
  private check(header: Header): string | undefined {
    if (header.opcode >= 8) {
      if (header.payload > 125) return `a control frame of ${Number.isFinite(header.payload) ? header.payload : "too many"} bytes (at most 125)`;
      if (!header.fin) return "a fragmented control frame";
      return undefined;
    }
    if (header.opcode === 0 && !this.fragmented) return "a continuation frame outside a fragmented message";
    if (header.opcode !== 0 && this.fragmented) return "a new data frame inside a fragmented message";
    return undefined;
  }

  /** True between frames as passed on: a frame the proxy writes now cannot land inside another. */
  get atBoundary(): boolean {
    return this.remaining === 0;
  }

  feed(chunk: Buffer): { pass: Buffer; violated: boolean } {
    const data = this.partial ? Buffer.concat([this.partial, chunk]) : chunk;
    this.partial = undefined;
    let offset = 0;
    while (offset < data.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, data.length - offset);
        this.remaining -= take;
        offset += take;
        continue;
      }
      const header = parseHeader(data, offset);
      if (header === undefined) {
        this.partial = Buffer.from(data.subarray(offset));
        return { pass: data.subarray(0, offset), violated: false };
      }
      const problem = this.check(header);
      if (problem !== undefined) {
        this.problem = problem;
        return { pass: data.subarray(0, offset), violated: true };
      }
      if (header.opcode < 8) {
        const total = header.opcode === 0 ? this.messageBytes + header.payload : header.payload;
        if (total > this.maxMessageBytes) {
          this.offending = total;
          return { pass: data.subarray(0, offset), violated: true };
        }
        this.messageBytes = header.fin ? 0 : total;
        this.fragmented = !header.fin;
      }
      this.remaining = header.payload;
      offset += header.length;
    }
    return { pass: data, violated: false };
  }
}

interface Header {
  fin: boolean;
  opcode: number;
  /** Header bytes (length fields and mask included). */
  length: number;
  payload: number;
}

function parseHeader(b: Buffer, at: number): Header | undefined {
  if (b.length - at < 2) return undefined;
  const fin = (b[at]! & 0x80) !== 0;
  const opcode = b[at]! & 0x0f;
  const masked = (b[at + 1]! & 0x80) !== 0;
  const len7 = b[at + 1]! & 0x7f;
  const extra = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
  const length = 2 + extra + (masked ? 4 : 0);
  if (b.length - at < length) return undefined;
  let payload = len7;
  if (len7 === 126) payload = b.readUInt16BE(at + 2);
  // Past 2^53 a length is no number at all; past any sane limit anyway, so it counts as infinite.
  else if (len7 === 127) payload = b.readUInt32BE(at + 2) >= 0x200000 ? Number.POSITIVE_INFINITY : b.readUInt32BE(at + 2) * 2 ** 32 + b.readUInt32BE(at + 6);
  return { fin, opcode, length, payload };
}
