// codec.js: the wire codec of imcloud.js (see there): frames, op 9 batches, the
// auth body, and the bodies of the replies and pushes a Client reads. Pure
// functions on Uint8Array/ArrayBuffer with DataView; nothing here touches the
// network, so all of it is unit-tested in Node. imcloud.js re-exports it: import
// from there.
//
// Frame (all integers big-endian, header always 16 bytes):
//
//	packLen int32 | headerLen int16 (16) | ver int16 | op int32 | seq int32 | body

/** Size of every frame header; headerLen on the wire must equal it. */
export const HEADER_LEN = 16;

/** ver of goim clients and of pushes. */
export const VER_GOIM = 1;
/** ver of an auth frame that opts into extensions (op 6, JSON AuthReply fields). */
export const VER_EXTENSIONS = 2;

/** Operations (docs/protocol.md, section 4). Ops of 1000 and above are application pushes. */
export const Op = Object.freeze({
  HEARTBEAT: 2,
  HEARTBEAT_REPLY: 3,
  SEND_MSG: 4,
  DISCONNECT: 6,
  AUTH: 7,
  AUTH_REPLY: 8,
  RAW: 9,
  CHANGE_ROOM: 12,
  CHANGE_ROOM_REPLY: 13,
  SUB: 14,
  SUB_REPLY: 15,
  UNSUB: 16,
  UNSUB_REPLY: 17,
  JOIN: 18,
  JOIN_REPLY: 19,
  LEAVE: 20,
  LEAVE_REPLY: 21,
  REFRESH: 22,
  REFRESH_REPLY: 23,
  PUSH_AT: 24,
  RECOVERY: 25,
});

/** ProtocolError is thrown by the decoders for malformed input. */
export class ProtocolError extends Error {
  constructor(message) {
    super(`imcloud: ${message}`);
    this.name = "ProtocolError";
  }
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * toBytes turns a body (undefined/null, string, Uint8Array, any other
 * ArrayBufferView, ArrayBuffer, or a JSON-able object) into a Uint8Array.
 * Strings are UTF-8 encoded; plain objects are JSON encoded.
 */
export function toBytes(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === "string") return utf8Encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return utf8Encoder.encode(JSON.stringify(body));
}

/**
 * encodeFrame returns the wire encoding of one frame.
 * @param {{op: number, ver?: number, seq?: number, body?: any}} frame
 * @returns {Uint8Array}
 */
export function encodeFrame({ op, ver = VER_GOIM, seq = 0, body } = {}) {
  if (!Number.isInteger(op)) throw new TypeError("imcloud: encodeFrame needs an integer op");
  const b = toBytes(body);
  const out = new Uint8Array(HEADER_LEN + b.length);
  const v = new DataView(out.buffer);
  v.setInt32(0, HEADER_LEN + b.length);
  v.setInt16(4, HEADER_LEN);
  v.setInt16(6, ver);
  v.setInt32(8, op);
  v.setInt32(12, seq);
  out.set(b, HEADER_LEN);
  return out;
}

/**
 * decodeFrames decodes one or more complete frames laid back to back (a
 * WebSocket message, or the body of an op 9 batch). It does not look inside
 * op 9 frames; see unbatch and decodeMessage. Bodies are views into data, not
 * copies.
 *
 * Throws ProtocolError when data ends inside a frame, when headerLen is not
 * 16, or when packLen is smaller than the header.
 * @param {ArrayBuffer|ArrayBufferView} data
 * @returns {{ver: number, op: number, seq: number, body: Uint8Array}[]}
 */
export function decodeFrames(data) {
  const bytes = toBytes(data);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames = [];
  let off = 0;
  while (off < bytes.length) {
    if (bytes.length - off < HEADER_LEN) {
      throw new ProtocolError(`truncated frame header at offset ${off} (${bytes.length - off} of ${HEADER_LEN} bytes)`);
    }
    const packLen = v.getInt32(off);
    const headerLen = v.getInt16(off + 4);
    if (headerLen !== HEADER_LEN) {
      throw new ProtocolError(`header length ${headerLen} at offset ${off}, want ${HEADER_LEN}`);
    }
    if (packLen < HEADER_LEN) {
      throw new ProtocolError(`pack length ${packLen} at offset ${off} is smaller than the header`);
    }
    if (packLen > bytes.length - off) {
      throw new ProtocolError(`truncated frame at offset ${off}: pack length ${packLen}, ${bytes.length - off} bytes left`);
    }
    frames.push({
      ver: v.getInt16(off + 6),
      op: v.getInt32(off + 8),
      seq: v.getInt32(off + 12),
      body: bytes.subarray(off + HEADER_LEN, off + packLen),
    });
    off += packLen;
  }
  return frames;
}

/**
 * unbatch replaces every op 9 frame by the frames of its body, in order. op 9
 * is never nested (docs/protocol.md, section 5): a nested one is a ProtocolError.
 */
export function unbatch(frames) {
  const out = [];
  for (const f of frames) {
    if (f.op !== Op.RAW) {
      out.push(f);
      continue;
    }
    for (const inner of decodeFrames(f.body)) {
      if (inner.op === Op.RAW) throw new ProtocolError("op 9 nested in a batch");
      out.push(inner);
    }
  }
  return out;
}

/**
 * decodeMessage decodes one WebSocket message into its frames with op 9
 * batches flattened. A text message (string) is read as its UTF-8 bytes, like
 * a binary one.
 */
export function decodeMessage(data) {
  return unbatch(decodeFrames(typeof data === "string" ? utf8Encoder.encode(data) : data));
}

/** encodeBatch builds an op 9 frame whose body holds the given frames (for tests and tools). */
export function encodeBatch(frames) {
  const parts = frames.map((f) => encodeFrame(f));
  const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    body.set(p, off);
    off += p.length;
  }
  return encodeFrame({ op: Op.RAW, body });
}

/** heartbeatOnline reads the 4-byte online count of a heartbeat reply (op 3) body. */
export function heartbeatOnline(body) {
  const b = toBytes(body);
  if (b.length !== 4) throw new ProtocolError(`heartbeat reply body is ${b.length} bytes, want 4`);
  return new DataView(b.buffer, b.byteOffset, 4).getInt32(0);
}

/** text decodes a body as UTF-8. */
export function text(body) {
  return utf8Decoder.decode(toBytes(body));
}

/**
 * authBody is the JSON body of the auth frame (op 7). Fields the caller left
 * out get goim's defaults; token is omitted when empty. With recover, the
 * body asks for recovery ("recover": true) and carries positions (stream ->
 * {epoch, offset}) when there are any.
 */
export function authBody({ mid = 0, key = "", roomId = "", platform = "web", accepts = [], token = "", recover = false, positions = null } = {}) {
  const body = { mid: Number(mid), key, room_id: roomId, platform, accepts: accepts.map(Number) };
  if (token) body.token = token;
  if (recover) {
    body.recover = true;
    if (positions && Object.keys(positions).length > 0) body.positions = positions;
  }
  return JSON.stringify(body);
}

/** parseOps accepts "1000,1001", [1000, "1001"] or a number and returns an array of ints. */
export function parseOps(ops) {
  if (ops === undefined || ops === null || ops === "") return [];
  const list = Array.isArray(ops) ? ops : String(ops).split(",");
  return list
    .map((s) => String(s).trim())
    .filter((s) => s !== "")
    .map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n)) throw new TypeError(`imcloud: op ${JSON.stringify(s)} is not an integer`);
      return n;
    });
}

/**
 * Message is a push (or any frame the client does not consume itself). A push
 * that came in an op 24 frame (a recover connection's user or room push) has
 * the push's own op and its place in its stream: stream, epoch, offset, and
 * replayed (it is one the client missed, replayed at reconnect or at a
 * ChangeRoom or a Join); other messages have stream, epoch and offset null
 * and replayed false. room is the room of a room stream's push ("r:<room>"):
 * on a connection in several rooms, the only way to tell which room a push
 * came to (a plain push does not say).
 */
export class Message {
  constructor(frame, receivedAt) {
    /** @type {number} */ this.op = frame.op;
    /** @type {number} */ this.ver = frame.ver;
    /** @type {number} */ this.seq = frame.seq;
    /** @type {Uint8Array} */ this.body = frame.body;
    /** @type {number} ms since the epoch, when the WebSocket message arrived */
    this.receivedAt = receivedAt;
    /** @type {string|null} the stream ("u:42", "r:live://1000") */
    this.stream = frame.stream ?? null;
    /** @type {string|null} the stream's epoch */
    this.epoch = frame.epoch ?? null;
    /** @type {number|null} the push's position in its stream */
    this.offset = frame.offset ?? null;
    /** @type {boolean} replayed from the stream's history */
    this.replayed = frame.replayed ?? false;
  }
  /** @type {string|null} the push's room, from its stream ("r:<room>"), else null */
  get room() {
    return this.stream !== null && this.stream.startsWith("r:") ? this.stream.slice(2) : null;
  }
  /** The body decoded as UTF-8. */
  text() {
    return text(this.body);
  }
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch {
      return undefined;
    }
  }
}
