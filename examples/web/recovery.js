// recovery.js: the recovery side of imcloud.js (see Client there): the bodies
// of ops 24 (PushAt) and 25 (Recovery), PositionBook, the positions a Client
// keeps per stream, and how a Client applies the two ops (onPushAt,
// onRecovery). imcloud.js re-exports the codec functions.
//
// How a Client recovers. With options.recover (the default), the auth frame
// asks for recovery and carries the client's positions: per stream it
// follows (its user's, "u:<mid>", and its primary room's, "r:<room>"), the
// epoch and offset of the last push it saw. The server then sends the pushes
// of the streams the connection follows as op 24 frames, replays after its
// AuthReply what the client missed since those positions, and tells how that
// went in one op 25 frame, before any live push (and again after a
// ChangeRoom, for the new room, and after a Join, for the joined room). The
// client
//   - turns each op 24 into an ordinary "message" event with the push's own
//     op, plus its stream, epoch and offset, and replayed (true for the
//     pushes between the AuthReply, or the ChangeRoom or Join reply, and the
//     op 25 for the stream); an op 24 whose op is 9 carries a batch: one
//     event per frame, all at the op 24's offset;
//   - keeps the position of each stream: set by op 25, advanced by each op 24
//     (never moved back within an epoch; a new epoch replaces it);
//   - emits a "recovery" event for each op 25: streams (per stream: stream,
//     epoch, offset, recovered, reason, replayed, resumed), recovered (every
//     stream was), replayed (the total) and resumed (the auth, ChangeRoom or
//     Join carried a position for at least one stream: this is a reconnect,
//     not a first connect). recovered false comes with a reason:
//     "epoch_changed" (the history was lost: nothing replayed), "trimmed"
//     (older than the history holds: what it still holds was replayed),
//     "unknown_position", "not_followed", "unavailable".
// Positions live as long as the Client object (options.positions seeds them,
// positions() reads them, e.g. to keep them across a page reload). A
// ChangeRoom to a room the client has a position in carries it (as JSON
// {"room_id", "position"}, once the server has shown that it recovers: an op
// 25 on this connection), so going back to a room replays what was pushed
// there meanwhile, within the history's bounds. A Join carries the room's
// position likewise (every server that knows Join reads that JSON form), and
// so do the re-joins after a reconnect: the joined rooms recover like the
// primary one. Leave forgets the room's position. The client holds the
// positions of at most MAX_HELD streams, dropping those of the rooms it moved
// away from longest ago first. A malformed op 24 or op 25 is an "error" event
// (ProtocolError) and is skipped; the connection stays, since reconnecting
// would bring the same bytes again. A server without recovery ignores the
// auth's extra fields and sends plain pushes and no op 25: recover on costs
// nothing there.
import { Message, Op, ProtocolError, text, toBytes, unbatch } from "./codec.js";

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * MAX_POSITIONS is how many stream positions an auth frame may carry; a
 * server refuses an auth with more. A Client sends those of its user's stream
 * and its room's: two, unless it holds several users' (a token client that
 * does not know its mid), and never more than this.
 */
export const MAX_POSITIONS = 16;

/**
 * decodePushAt decodes the body of an op 24 frame (PushAt: a push with its
 * stream and position, docs/protocol-recovery.md):
 *
 *	op int32 | offset int64 | s uint8 | stream (s bytes) | e uint8 | epoch (e bytes) | body
 *
 * op is the push's op, or 9 (Op.RAW) when body is an op 9 batch's frames:
 * pushes that share the offset (unbatch([pushAt]) flattens them).
 *
 * Throws ProtocolError when the body is too short for its lengths, the
 * stream or the epoch is empty, or the offset is negative or past
 * Number.MAX_SAFE_INTEGER (a position JavaScript cannot hold exactly). body
 * is a view into the given bytes.
 * @returns {{op: number, offset: number, stream: string, epoch: string, body: Uint8Array}}
 */
export function decodePushAt(body) {
  const b = toBytes(body);
  if (b.length < 14) throw new ProtocolError(`op 24 body is ${b.length} bytes, at least 14 needed`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const op = v.getInt32(0);
  const hi = v.getInt32(4);
  const lo = v.getUint32(8);
  if (hi < 0 || hi > 0x1fffff) throw new ProtocolError(`op 24 offset ${hi < 0 ? "is negative" : "is past 2^53"}`);
  const offset = hi * 0x100000000 + lo;
  const s = b[12];
  if (s === 0) throw new ProtocolError("op 24 stream name is empty");
  if (13 + s + 1 > b.length) throw new ProtocolError(`op 24 stream name of ${s} bytes runs past the body (${b.length} bytes)`);
  const e = b[13 + s];
  if (e === 0) throw new ProtocolError("op 24 epoch is empty");
  if (14 + s + e > b.length) throw new ProtocolError(`op 24 epoch of ${e} bytes runs past the body (${b.length} bytes)`);
  return {
    op,
    offset,
    stream: utf8Decoder.decode(b.subarray(13, 13 + s)),
    epoch: utf8Decoder.decode(b.subarray(14 + s, 14 + s + e)),
    body: b.subarray(14 + s + e),
  };
}

/**
 * encodePushAt builds the body of an op 24 frame (for tests and tools); see
 * decodePushAt. Throws a TypeError for a stream or an epoch that is empty or
 * over 255 bytes, or an offset that is not a non-negative safe integer.
 * @param {{op: number, offset: number, stream: string, epoch: string, body?: any}} push
 * @returns {Uint8Array}
 */
export function encodePushAt({ op, offset, stream, epoch, body } = {}) {
  const sb = utf8Encoder.encode(stream ?? "");
  const eb = utf8Encoder.encode(epoch ?? "");
  if (sb.length < 1 || sb.length > 255 || eb.length < 1 || eb.length > 255) {
    throw new TypeError("imcloud: encodePushAt needs a stream and an epoch of 1 to 255 bytes");
  }
  if (!Number.isInteger(op)) throw new TypeError("imcloud: encodePushAt needs an integer op");
  if (!Number.isSafeInteger(offset) || offset < 0) throw new TypeError("imcloud: encodePushAt needs a non-negative safe integer offset");
  const pb = toBytes(body);
  const out = new Uint8Array(14 + sb.length + eb.length + pb.length);
  const v = new DataView(out.buffer);
  v.setInt32(0, op);
  v.setUint32(4, Math.floor(offset / 0x100000000));
  v.setUint32(8, offset % 0x100000000);
  out[12] = sb.length;
  out.set(sb, 13);
  out[13 + sb.length] = eb.length;
  out.set(eb, 14 + sb.length);
  out.set(pb, 14 + sb.length + eb.length);
  return out;
}

/**
 * parseRecovery parses the JSON body of an op 25 frame (Recovery): one entry
 * per stream, {stream, epoch, offset, recovered, reason, replayed}; reason is
 * "" when recovered is true, replayed 0 when absent. Throws ProtocolError for
 * a body that is not such JSON (an entry without a stream name, a recovered
 * that is not a boolean, an offset that is not an integer).
 * @returns {{stream: string, epoch: string, offset: number, recovered: boolean, reason: string, replayed: number}[]}
 */
export function parseRecovery(body) {
  let v;
  try {
    v = JSON.parse(text(body));
  } catch (err) {
    throw new ProtocolError(`op 25 body is not JSON: ${err.message}`);
  }
  if (!v || !Array.isArray(v.streams)) throw new ProtocolError("op 25 body has no streams array");
  return v.streams.map((s, i) => {
    const bad = (what) => new ProtocolError(`op 25 stream ${i}: ${what}`);
    if (!s || typeof s !== "object") throw bad("not an object");
    if (typeof s.stream !== "string" || s.stream === "") throw bad("no stream name");
    if (typeof s.recovered !== "boolean") throw bad("recovered is not a boolean");
    const epoch = s.epoch ?? "";
    if (typeof epoch !== "string") throw bad("epoch is not a string");
    const offset = s.offset ?? 0;
    if (!Number.isSafeInteger(offset)) throw bad("offset is not an integer");
    const replayed = s.replayed ?? 0;
    if (!Number.isSafeInteger(replayed) || replayed < 0) throw bad("replayed is not a count");
    const reason = s.reason ?? "";
    if (typeof reason !== "string") throw bad("reason is not a string");
    return { stream: s.stream, epoch, offset, recovered: s.recovered, reason, replayed };
  });
}

/**
 * MAX_HELD is how many stream positions a Client holds at most: its user's,
 * its rooms', and the rooms it was in before, the least recently moved
 * dropped first.
 */
export const MAX_HELD = 64;

/**
 * PositionBook holds a Client's positions: per stream, the epoch and offset
 * of the last push it saw. follows(stream) says which streams the Client
 * follows now (its user's and its rooms': the primary room and those it
 * joined), which are never dropped. The positions of rooms it moved away
 * from with ChangeRoom are kept (a ChangeRoom back sends the room's), at
 * most MAX_HELD streams in all; those of rooms it left (Leave) are
 * forgotten.
 */
export class PositionBook {
  /**
   * @param {(stream: string) => boolean} follows
   * @param {Object<string, {epoch: string, offset: number}>} [initial]  positions to start from; malformed ones are left out
   */
  constructor(follows, initial = {}) {
    this.follows = follows;
    this._held = new Map(); // stream -> {epoch, offset}, least recently moved first
    this._asked = new Set(); // the streams whose positions were sent, until the op 25 answering them
    for (const [stream, p] of Object.entries(initial ?? {})) {
      if (typeof p?.epoch === "string" && p.epoch !== "" && Number.isSafeInteger(p.offset)) this._set(stream, p.epoch, p.offset);
    }
  }

  /** all returns every position held, {stream: {epoch, offset}}: a copy. */
  all() {
    const out = {};
    for (const [stream, p] of this._held) out[stream] = { epoch: p.epoch, offset: p.offset };
    return out;
  }

  /**
   * forAuth returns the positions an auth sends: those of the streams
   * sent(stream) names (its user's and its primary room's; a joined room's
   * goes with its Join), at most MAX_POSITIONS. The op 25 answering the auth
   * reports them as resumed.
   * @param {(stream: string) => boolean} sent
   */
  forAuth(sent) {
    const out = {};
    let n = 0;
    for (const [stream, p] of this._held) {
      if (n === MAX_POSITIONS) break;
      if (!sent(stream)) continue;
      out[stream] = { epoch: p.epoch, offset: p.offset };
      n++;
    }
    this._asked = new Set(Object.keys(out));
    return out;
  }

  /**
   * forRoom returns the position a ChangeRoom to stream or a Join of it
   * sends, or null; the op 25 answering it reports the stream as resumed.
   */
  forRoom(stream) {
    const p = this._held.get(stream);
    if (!p) return null;
    this._asked.add(stream);
    return { epoch: p.epoch, offset: p.offset };
  }

  /** forget drops the position of stream (a room the Client left). */
  forget(stream) {
    this._held.delete(stream);
    this._asked.delete(stream);
  }

  /**
   * pushed moves a stream's position to an op 24 push's: a new epoch
   * replaces it; within an epoch it never moves back (a push at or below it,
   * delivered live right after a first connect, leaves it).
   */
  pushed(stream, epoch, offset) {
    const held = this._held.get(stream);
    if (!held || held.epoch !== epoch || offset > held.offset) this._set(stream, epoch, offset);
  }

  /**
   * recovered applies the streams of an op 25 (parseRecovery's): a stream's
   * position becomes the one the server gives (unless it gives no epoch); a
   * stream reported not_followed is forgotten. Returns the detail of the
   * Client's "recovery" event.
   */
  recovered(streams) {
    const out = streams.map((s) => {
      const resumed = this._asked.delete(s.stream);
      if (s.reason === "not_followed") this._held.delete(s.stream);
      else if (s.epoch !== "") this._set(s.stream, s.epoch, s.offset);
      return { ...s, resumed };
    });
    return {
      streams: out,
      recovered: out.every((s) => s.recovered),
      replayed: out.reduce((n, s) => n + s.replayed, 0),
      resumed: out.some((s) => s.resumed),
    };
  }

  // _set holds a position as the most recently moved, dropping the least
  // recently moved stream not followed past MAX_HELD.
  _set(stream, epoch, offset) {
    this._held.delete(stream);
    this._held.set(stream, { epoch, offset });
    if (this._held.size <= MAX_HELD) return;
    for (const name of this._held.keys()) {
      if (!this.follows(name)) {
        this._held.delete(name);
        return;
      }
    }
  }
}

/**
 * onPushAt turns an op 24 frame a Client received into "message" events
 * (one, or one per frame of the op 9 batch it carries, all at its offset)
 * and advances the stream's position; a malformed one is reported and
 * skipped. It works through the Client's internals (_decode, _emit, _book,
 * _replayAll, _replaying).
 */
export function onPushAt(c, f, receivedAt) {
  const p = c._decode(decodePushAt, f.body);
  if (p === undefined) return;
  const pushes = p.op === Op.RAW ? c._decode(unbatch, [p]) : [p];
  if (pushes === undefined) return;
  c._book.pushed(p.stream, p.epoch, p.offset);
  const replayed = c._replayAll || c._replaying.has(p.stream);
  for (const { op, body } of pushes) {
    c._emit("message", new Message({ op, ver: f.ver, seq: f.seq, body, stream: p.stream, epoch: p.epoch, offset: p.offset, replayed }, receivedAt));
  }
}

/** onRecovery applies an op 25 frame a Client received to its positions and emits "recovery". */
export function onRecovery(c, f) {
  const streams = c._decode(parseRecovery, f.body);
  if (streams === undefined) return;
  c._replayAll = false;
  for (const s of streams) c._replaying.delete(s.stream);
  c._recovers = true;
  const detail = c._book.recovered(streams);
  c.lastRecovery = detail;
  c._emit("recovery", detail);
}
