// rooms.js: the rooms side of imcloud.js (see Client there): a connection in
// several rooms (ops 18 to 21, Join and Leave, for clients that authenticate
// with ver 2), the bodies of their replies and of a refused ChangeRoom, and
// Rooms, what a Client keeps of the rooms it joined. imcloud.js re-exports
// RoomError, roomBody, parseRoomReply and changeRoomRefusal.
//
// A connection is in a set of rooms: its primary room (Client.roomId, the
// goim room of auth room_id and ChangeRoom, the one the heartbeat's online
// count is about) and the rooms it joined (Client.join). A push to any of
// them reaches it once. The server caps the set (32 rooms by default, the
// primary included) and may refuse a room (authorization).
//
// Join (op 18) and Leave (op 20) carry the bare room key, or, for a Join on a
// recover Client that holds a position in the room's stream "r:<room>", JSON
// {"room_id": room, "position": {"epoch", "offset"}}: the server then replays
// what the room got since that position (its op 24 frames, replayed true),
// then sends an op 25 for the stream, before the room's live pushes. The
// replies (ops 19 and 21) are JSON {"room_id", "ok"} or, refused,
// {"room_id", "ok": false, "error": code}; a ChangeRoom the server refuses is
// answered op 13 with such a refusal (a success echoes the request's body).
// Codes: "forbidden" (the identity may not enter the room),
// "too_many_rooms", "invalid_room" (not "type://id", empty or over 256
// bytes), "malformed" (a body starting with "{" that is not the object).
import { Op, ProtocolError, text } from "./codec.js";

const OPEN = "open"; // State.OPEN of imcloud.js

/**
 * RoomError is the error with which join, leave and changeRoom reject when
 * the server refused the room (and the error of a "refused" event): op is
 * "join", "leave" or "changeRoom", code the server's error code.
 */
export class RoomError extends Error {
  constructor(op, room, code) {
    super(`imcloud: ${op} ${JSON.stringify(room)} refused: ${code}`);
    this.name = "RoomError";
    /** @type {string} */ this.op = op;
    /** @type {string} */ this.room = room;
    /** @type {string} */ this.code = code;
  }
}

/**
 * roomBody is the body of a Join, Leave or ChangeRoom: the bare room key, or
 * JSON {"room_id", "position"} when a position is given.
 * @param {string} room
 * @param {{epoch: string, offset: number}|null} [position]
 */
export function roomBody(room, position = null) {
  return position ? JSON.stringify({ room_id: room, position }) : room;
}

/**
 * parseRoomReply parses the JSON body of an op 19 (JoinReply) or op 21
 * (LeaveReply): {room, ok, error}, error "" when ok. Throws ProtocolError for
 * a body that is not such JSON (no boolean ok, a refusal without an error
 * code).
 * @returns {{room: string, ok: boolean, error: string}}
 */
export function parseRoomReply(body) {
  let v;
  try {
    v = JSON.parse(text(body));
  } catch (err) {
    throw new ProtocolError(`room reply is not JSON: ${err.message}`);
  }
  if (!v || typeof v !== "object" || typeof v.ok !== "boolean") throw new ProtocolError("room reply has no boolean ok");
  const room = v.room_id ?? "";
  if (typeof room !== "string") throw new ProtocolError("room reply's room_id is not a string");
  const error = v.error ?? "";
  if (typeof error !== "string" || (!v.ok && error === "")) throw new ProtocolError("refused room reply has no error code");
  return { room, ok: v.ok, error: v.ok ? "" : error };
}

/**
 * changeRoomRefusal is the error code of an op 13 body that refuses the
 * ChangeRoom (JSON with "ok": false), or "" for the echo of a request the
 * server carried out.
 */
export function changeRoomRefusal(body) {
  const s = text(body);
  if (!s.startsWith("{")) return "";
  try {
    const v = JSON.parse(s);
    if (v && v.ok === false) return typeof v.error === "string" && v.error !== "" ? v.error : "refused";
  } catch {
    // not JSON: an echo
  }
  return "";
}

/**
 * Rooms is what a Client keeps of the rooms it joined beyond its primary
 * room: the set, in join order, that every auth is followed by a Join of
 * (a re-join), and per room whether the server confirmed it on the current
 * connection; it moves the primary room (Client.roomId) too. It sends
 * through the Client's internals (_request, _emit, _book, _replaying,
 * _recovers, roomId, recover, state); Client's changeRoom, join, leave and
 * rooms are its methods.
 */
export class Rooms {
  constructor(client) {
    this.c = client;
    this._joined = new Map(); // room -> confirmed on this connection
    this._inflight = new Map(); // room -> the promise of its Join waiting for a reply
  }

  /** list is the rooms the client is in: its primary room first, if any, then those it joined. */
  list() {
    const out = this.c.roomId === "" ? [] : [this.c.roomId];
    for (const room of this._joined.keys()) if (room !== this.c.roomId) out.push(room);
    return out;
  }

  /** has says whether the client is in room (primary or joined). */
  has(room) {
    return room !== "" && (room === this.c.roomId || this._joined.has(room));
  }

  /**
   * join adds room to the set and, connected, sends a Join (op 18). It
   * resolves with the room on the server's ok (op 19): from then on every
   * push to the room reaches the client, and with recovery what the room got
   * since the position the client holds in it is replayed first. It rejects
   * with a RoomError when the server refused (the room leaves the set), or
   * with an Error when no reply came in time or the connection was lost (the
   * room stays in the set: the next auth joins it again). Not connected, it
   * resolves at once and the room is joined after the next auth (a refusal
   * then is a "refused" event). A Join of the primary room changes nothing;
   * a join of a room whose Join waits for its reply waits for that one.
   * @returns {Promise<string>}
   */
  async join(room) {
    room = String(room ?? "");
    if (room !== this.c.roomId && !this._joined.has(room)) this._joined.set(room, false);
    if (this.c.state !== OPEN) return room;
    await (this._inflight.get(room) ?? this._join(room, false));
    return room;
  }

  /**
   * leave takes room out of the set, or leaves the primary room (roomId
   * becomes "" and a "room" event says so), and, connected, sends a Leave
   * (op 20). It resolves on the server's reply (op 21; leaving a room the
   * connection is not in is fine) and rejects with a RoomError when the
   * room key is invalid. The room is not joined again and its position is
   * forgotten. Not connected, it resolves at once.
   * @returns {Promise<string>}
   */
  async leave(room) {
    room = String(room ?? "");
    const c = this.c;
    const primary = room !== "" && room === c.roomId;
    this._joined.delete(room);
    this._inflight.delete(room); // a join() from now on sends a Join after this Leave
    if (primary) c.roomId = "";
    if (c.state !== OPEN) {
      c._book.forget(`r:${room}`);
      if (primary) c._emit("room", { room: "" });
      return room;
    }
    await c._request(Op.LEAVE, roomBody(room), Op.LEAVE_REPLY, (body) => {
      const reply = parseRoomReply(body);
      if (!reply.ok) throw new RoomError("leave", room, reply.error);
      // A Join of the room sent since then wins: the room is new to the
      // connection again when its reply comes.
      if (this._joined.has(room)) this._joined.set(room, false);
      else if (!this.has(room)) c._book.forget(`r:${room}`);
      c._replaying.delete(`r:${room}`);
      c._emit("leave", { room });
      if (primary) {
        c._emit("room", { room: "" });
        c.heartbeat(); // the online count is about the primary room
      }
    });
    return room;
  }

  /**
   * changeRoom moves the primary room to room ("" leaves it) with a
   * ChangeRoom (op 12). It resolves with the room once the server replied
   * (op 13), then emits "room" and sends a heartbeat (the online count is
   * the new room's). It rejects with a RoomError when the server refused:
   * the primary room stays as it was. A room joined before becomes the
   * primary room. The room is also remembered for reconnects. With
   * recovery, it carries the room's position when the client has one, once
   * the server has shown that it recovers (an older one would take the JSON
   * for a malformed room key). Not connected, it resolves at once: the next
   * auth enters the room.
   * @returns {Promise<string>}
   */
  async changeRoom(room) {
    room = room ?? "";
    const c = this.c;
    const from = c.roomId;
    c.roomId = room;
    if (c.state !== OPEN) {
      this._joined.delete(room);
      return room;
    }
    const position = c._recovers && room !== "" ? c._book.forRoom(`r:${room}`) : null;
    await c._request(Op.CHANGE_ROOM, roomBody(room, position), Op.CHANGE_ROOM_REPLY, (body) => {
      const code = changeRoomRefusal(body);
      if (code !== "") {
        if (c.roomId === room) c.roomId = from;
        throw new RoomError("changeRoom", room, code);
      }
      // A recovering server replays the new room's missed pushes next,
      // until its op 25 for the stream (it sends one for a room the
      // connection had joined too).
      if (c._recovers && room !== "") c._replaying.add(`r:${room}`);
      this._joined.delete(room);
    });
    c._emit("room", { room });
    c.heartbeat();
    return room;
  }

  /**
   * rejoin sends a Join of every room in the set: called on each AuthReply.
   * A refusal is a "refused" event (no promise hears of it), other failures
   * an "error" event unless the connection went away meanwhile (the next
   * auth re-joins).
   */
  rejoin() {
    const c = this.c;
    const ws = c._ws;
    for (const room of this._joined.keys()) {
      this._joined.set(room, false);
      this._join(room, true).catch((error) => {
        if (error instanceof RoomError) c._emit("refused", { op: "join", room, code: error.code, error });
        else if (c._ws === ws) c._emit("error", { error });
      });
    }
  }

  // _join sends one Join and applies its reply when it arrives, before the
  // frames after it (the room's replay) are dispatched.
  _join(room, rejoin) {
    const c = this.c;
    const stream = `r:${room}`;
    const position = c.recover ? c._book.forRoom(stream) : null;
    const p = c._request(Op.JOIN, roomBody(room, position), Op.JOIN_REPLY, (body) => {
      if (this._inflight.get(room) === p) this._inflight.delete(room);
      const reply = parseRoomReply(body);
      if (!reply.ok) {
        this._joined.delete(room);
        throw new RoomError("join", room, reply.error);
      }
      // A room new to the connection: a recovering server replays its
      // missed pushes next, until its op 25 for the stream. (A Join of a
      // room the connection is in changes nothing: no replay.)
      const fresh = this._joined.get(room) === false;
      if (fresh) this._joined.set(room, true);
      if (fresh && c.recover) c._replaying.add(stream);
      c._emit("join", { room, rejoin });
    });
    this._inflight.set(room, p);
    // No reply (timeout, connection lost): the next join() sends again.
    p.catch(() => this._inflight.get(room) === p && this._inflight.delete(room));
    return p;
  }
}
