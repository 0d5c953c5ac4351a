// Type declarations of imcloud.js (the npm package @imcloud/client). The
// comments in imcloud.js are the reference; these declarations follow them
// and package.test.mjs checks that both export the same values.
//
// Client extends the standard EventTarget: compile with the "dom" lib (a
// browser project) or with @types/node (Node.js 18 and later).

/** Size of every frame header; headerLen on the wire must equal it. */
export declare const HEADER_LEN: 16;
/** ver of goim clients and of pushes. */
export declare const VER_GOIM: 1;
/** ver of an auth frame that opts into extensions (op 6, JSON AuthReply fields). */
export declare const VER_EXTENSIONS: 2;

/** Operations (docs/protocol.md, section 4). Ops of 1000 and above are application pushes. */
export declare const Op: Readonly<{
  HEARTBEAT: 2;
  HEARTBEAT_REPLY: 3;
  SEND_MSG: 4;
  DISCONNECT: 6;
  AUTH: 7;
  AUTH_REPLY: 8;
  RAW: 9;
  CHANGE_ROOM: 12;
  CHANGE_ROOM_REPLY: 13;
  SUB: 14;
  SUB_REPLY: 15;
  UNSUB: 16;
  UNSUB_REPLY: 17;
  /** enter one more room (ver-2 connections to a server with rooms) */
  JOIN: 18;
  /** JSON {"room_id", "ok", "error"?} */
  JOIN_REPLY: 19;
  /** leave a room (ver-2 connections to a server with rooms) */
  LEAVE: 20;
  /** JSON {"room_id", "ok", "error"?} */
  LEAVE_REPLY: 21;
  /** a fresh token before the current one expires, body the token (ver-2 connections) */
  REFRESH: 22;
  /** JSON {"ok": true, "expires": unix s} or {"ok": false, "error"} */
  REFRESH_REPLY: 23;
  /** a push with its stream and position (recover connections only) */
  PUSH_AT: 24;
  /** how recovery went, JSON (recover connections only) */
  RECOVERY: 25;
}>;

/**
 * The push ops a Client takes for key, mid and broadcast pushes when
 * options.accepts is not given: 1000, 1001 and 1002 (the Go client's default
 * too). Room pushes are not filtered; an explicit empty list takes none.
 */
export declare const DEFAULT_ACCEPTS: readonly number[];

/** Connection states, in Client.state. */
export declare const State: Readonly<{
  /** not started, closed by close(), or given up */
  IDLE: "idle";
  /** waiting for getToken, socket opening, or auth sent and not yet answered */
  CONNECTING: "connecting";
  /** authenticated */
  OPEN: "open";
  /** disconnected, a reconnect is scheduled */
  WAITING: "waiting";
}>;
export type State = (typeof State)[keyof typeof State];

/** Thrown by the decoders for malformed input. */
export declare class ProtocolError extends Error {
  constructor(message: string);
  name: "ProtocolError";
}

/**
 * The error of the "error" event with which a Client gives up after the
 * server refused its auth maxAuthRefusals times in a row.
 */
export declare class AuthError extends Error {
  constructor(reason: string, refusals: number);
  name: "AuthError";
  /** The server's op 6 reason when it sent one before closing, else "". */
  reason: string;
  /** How many auths in a row were refused. */
  refusals: number;
}

/** The codes with which a server refuses a room (RoomError.code). */
export type RoomErrorCode = "forbidden" | "too_many_rooms" | "invalid_room" | "malformed";

/**
 * The error with which join, leave and changeRoom reject when the server
 * refused the room, and the error of a "refused" event.
 */
export declare class RoomError extends Error {
  constructor(op: string, room: string, code: string);
  name: "RoomError";
  /** what was refused */
  op: "join" | "leave" | "changeRoom";
  room: string;
  /** the server's error code (a RoomErrorCode, or one a newer server added) */
  code: RoomErrorCode | (string & {});
}

/**
 * The error with which refreshToken rejects when the server refused the new
 * token (op 23 "ok": false); the server then closes the connection and the
 * client reconnects with a token from getToken.
 */
export declare class RefreshError extends Error {
  constructor(error: string);
  name: "RefreshError";
  /** the server's code: "invalid_token", "token_expired", "other_user", "other_key", "revoked", or one a newer server added */
  error: string;
}

/** An op 23 (RefreshReply) body parsed; expires in unix seconds (null: none given), error "" when ok. */
export interface RefreshReply {
  ok: boolean;
  expires: number | null;
  error: string;
}
/** Parses an op 23 body; throws ProtocolError when it is malformed. */
export declare function parseRefreshReply(body: Body): RefreshReply;
/** The payload of a JWT, decoded but NOT verified, or null when token is not one. */
export declare function jwtClaims(token: unknown): Record<string, unknown> | null;
/**
 * How long after now (ms) to refresh a token with these claims (unix
 * seconds) fetched at fetchedAt (ms since the epoch): at 80% of the time it
 * had left then, at least 1 s, at most 2^31-1 ms; null when it does not expire.
 */
export declare function refreshDelay(claims: { exp?: unknown; iat?: unknown } | null | undefined, fetchedAt?: number, now?: number): number | null;
/**
 * Whether an op 6 sent to an authenticated connection is a kick's: a reason
 * that is none of the node's own, and no reconnect hint.
 */
export declare function isKick(reason: unknown, reconnectMs?: number | null, kick?: boolean): boolean;

/** A body: nothing, UTF-8 text, bytes, or a JSON-able object. */
export type Body = undefined | null | string | ArrayBuffer | ArrayBufferView | object;

/** One decoded frame; body is a view into the decoded data. */
export interface Frame {
  ver: number;
  op: number;
  seq: number;
  body: Uint8Array;
}

/** A frame to encode; ver defaults to 1 and seq to 0. */
export interface FrameInput {
  op: number;
  ver?: number;
  seq?: number;
  body?: Body;
}

export declare function toBytes(body: Body): Uint8Array;
export declare function encodeFrame(frame: FrameInput): Uint8Array;
export declare function decodeFrames(data: ArrayBuffer | ArrayBufferView): Frame[];
export declare function unbatch(frames: Frame[]): Frame[];
export declare function decodeMessage(data: ArrayBuffer | ArrayBufferView | string): Frame[];
export declare function encodeBatch(frames: FrameInput[]): Uint8Array;
export declare function heartbeatOnline(body: Body): number;
export declare function text(body: Body): string;

export interface AuthBodyInput {
  mid?: number;
  key?: string;
  roomId?: string;
  platform?: string;
  accepts?: number[];
  token?: string;
  /** ask for recovery ("recover": true) and send positions */
  recover?: boolean;
  positions?: Positions | null;
}
export declare function authBody(input?: AuthBodyInput): string;

/** A place in a stream: its epoch and the offset of the last push seen. */
export interface Position {
  epoch: string;
  offset: number;
}
/** Positions by stream name ("u:42", "r:live://1000"). */
export type Positions = Record<string, Position>;

/** How many positions an auth frame may carry (a server refuses more). */
export declare const MAX_POSITIONS: 16;
/** How many stream positions a Client holds at most (the rooms it left longest ago go first). */
export declare const MAX_HELD: 64;

/** An op 24 body decoded: the push's own op and body, and its place in its stream. */
export interface PushAt {
  /** the push's op, or 9 (Op.RAW) when body is an op 9 batch's frames sharing the offset */
  op: number;
  /** the push's position in its stream */
  offset: number;
  stream: string;
  epoch: string;
  body: Uint8Array;
}
/** Decodes an op 24 body; throws ProtocolError when it is malformed. */
export declare function decodePushAt(body: Body): PushAt;
/** Encodes an op 24 body (for tests and tools). */
export declare function encodePushAt(push: { op: number; offset: number; stream: string; epoch: string; body?: Body }): Uint8Array;

/** The reasons a stream was not fully recovered (RecoveredStream.reason). */
export type RecoveryReason = "epoch_changed" | "trimmed" | "unknown_position" | "not_followed" | "unavailable";

/** One stream of an op 25 frame. */
export interface RecoveryStream {
  stream: string;
  /** the position the client holds after the frame */
  epoch: string;
  offset: number;
  /** everything after the client's position arrived (a first connect counts) */
  recovered: boolean;
  /** why not, when recovered is false (a RecoveryReason, or one a newer server added); "" otherwise */
  reason: RecoveryReason | (string & {});
  /** how many pushes of the stream were replayed */
  replayed: number;
}
/** Parses an op 25 body; throws ProtocolError when it is malformed. */
export declare function parseRecovery(body: Body): RecoveryStream[];

/** The body of a Join, Leave or ChangeRoom: the bare room key, or JSON {"room_id", "position"} with a position. */
export declare function roomBody(room: string, position?: Position | null): string;
/** An op 19 (JoinReply) or op 21 (LeaveReply) body parsed; error is "" when ok. */
export interface RoomReply {
  room: string;
  ok: boolean;
  error: RoomErrorCode | (string & {});
}
/** Parses an op 19 or op 21 body; throws ProtocolError when it is malformed. */
export declare function parseRoomReply(body: Body): RoomReply;
/** The error code of an op 13 body that refuses the ChangeRoom ("ok": false), or "" for a success. */
export declare function changeRoomRefusal(body: Body): string;

/** The detail of a "recovery" event. */
export interface Recovery {
  streams: Array<RecoveryStream & { /** the auth carried a position for this stream */ resumed: boolean }>;
  /** every stream was recovered */
  recovered: boolean;
  /** pushes replayed, all streams */
  replayed: number;
  /** the auth carried a position for at least one stream (a reconnect, not a first connect) */
  resumed: boolean;
}
export declare function parseOps(ops: number | string | Array<number | string> | null | undefined): number[];

export interface BackoffOptions {
  /** first wait, ms; default 500 */
  minMs?: number;
  /** longest wait, ms; default 30000 */
  maxMs?: number;
  /** growth per attempt; default 2 */
  factor?: number;
  /** random share of each wait; default 0.5 */
  jitter?: number;
  /** random share added to a server hint; default 0.2 */
  hintJitter?: number;
}
export declare function backoffDelay(attempt: number, opts?: BackoffOptions, hintMs?: number | null, random?: () => number): number;

/**
 * A push (or any frame the client does not consume itself). A push that came
 * in an op 24 frame carries its own op and its place in its stream; other
 * messages have stream, epoch and offset null and replayed false.
 */
export declare class Message {
  constructor(frame: Frame, receivedAt: number);
  op: number;
  ver: number;
  seq: number;
  body: Uint8Array;
  /** ms since the epoch, when the WebSocket message arrived */
  receivedAt: number;
  /** the push's stream ("u:42", "r:live://1000"), or null */
  stream: string | null;
  /** the stream's epoch, or null */
  epoch: string | null;
  /** the push's position in its stream, or null */
  offset: number | null;
  /** replayed from the stream's history (missed while disconnected, or before a ChangeRoom or a Join) */
  replayed: boolean;
  /**
   * The room of a room stream's push ("r:<room>"), else null: on a
   * connection in several rooms, the way to tell which room a push came to
   * (recover connections; a plain push does not say).
   */
  readonly room: string | null;
  /** The body decoded as UTF-8. */
  text(): string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json(): unknown;
}

/**
 * A WebSocket constructor: the standard one (browsers, Node.js 22 and later)
 * or one with its interface, such as the "ws" package's.
 */
export type WebSocketConstructor = new (url: string) => unknown;

export interface ClientOptions {
  /** user id (ignored by a server that verifies tokens) */
  mid?: number;
  /** connection key; empty lets the server assign one */
  key?: string;
  /** room key "type://id", or empty */
  roomId?: string;
  /** default "web" */
  platform?: string;
  /** push ops taken for key, mid and broadcast pushes; default DEFAULT_ACCEPTS (1000-1002) */
  accepts?: number[] | string;
  /** token for a server with a token authenticator */
  token?: string;
  /**
   * Fetches the token: called before every connection attempt (the first
   * and each reconnect), before the socket opens; replaces token. A throw
   * or rejection is an "error" event and a retry with backoff. When the
   * token is a JWT with "exp", also called when 80% of its lifetime has
   * passed, and the new token sent to the server (op 22), which otherwise
   * closes the connection at expiry.
   */
  getToken?: () => string | Promise<string>;
  /** reconnect after the connection drops; default true */
  reconnect?: boolean;
  /**
   * Reconnect after a kick (op 6 with the application's reason) too, as
   * after any drop; default false: a kicked client stops (state IDLE) until
   * connect().
   */
  reconnectAfterKick?: boolean;
  /** auth refusals in a row before the client gives up with an AuthError; default 3 */
  maxAuthRefusals?: number;
  backoff?: BackoffOptions;
  /** used until the server's AuthReply says otherwise; default 30000 */
  heartbeatMs?: number;
  /** how long changeRoom/join/leave/sub/unsub/send wait for a reply; default 10000 */
  requestTimeoutMs?: number;
  /** WebSocket constructor; default globalThis.WebSocket (Node.js before 22 has none: pass the "ws" package's) */
  WebSocket?: WebSocketConstructor;
  /**
   * Ask for the pushes missed while disconnected (ops 24 and 25): the auth
   * carries the positions the client holds, the server replays what is
   * missing and emits "recovery". Default true; a server without recovery
   * ignores it.
   */
  recover?: boolean;
  /** positions to start from, e.g. positions() of an earlier Client */
  positions?: Positions;
}

/** The detail of each Client event. */
export interface ClientEventMap {
  /** the socket opened; auth is sent */
  open: { url: string };
  /** the server accepted auth (its AuthReply) */
  auth: { mid: number; key: string; room_id: string; heartbeat: number };
  /** a push */
  message: Message;
  /** the primary room's online count (heartbeat reply) */
  online: { count: number };
  /** how recovery went (op 25): after the auth, and after a ChangeRoom or a Join for the room */
  recovery: Recovery;
  /** the primary room changed: a ChangeRoom acknowledged by the server, or leave() of it */
  room: { room: string };
  /** the server confirmed a Join; rejoin: the Join that follows an auth (a reconnect) */
  join: { room: string; rejoin: boolean };
  /** the server confirmed a Leave */
  leave: { room: string };
  /** the server refused a Join no promise waits for: a re-join after an auth */
  refused: { op: "join"; room: string; code: RoomErrorCode | (string & {}); error: RoomError };
  /** the server says why it is closing (op 6) */
  disconnect: { reason: string; reconnectMs: number | null; kick?: boolean };
  /**
   * the application kicked the connection, reason its reason ("kicked" when
   * it gave none); after "disconnect"; the client stops unless reconnectAfterKick
   */
  kicked: { reason: string };
  /**
   * how the server answered a token refresh (op 23): ok, and expiresAt, the
   * token's expiry (ms since the epoch, or null); or refused, with the
   * server's error, and the server closes the connection (the client reconnects)
   */
  refresh: { ok: boolean; expiresAt: number | null; error: string };
  /** the socket closed; reconnect false means the client stopped */
  close: { code: number; reason: string; wasClean: boolean; reconnect: boolean; delayMs: number | null; attempt: number };
  /** something failed: ProtocolError, AuthError, a getToken failure, a WebSocket constructor error, a re-join or token refresh without a reply */
  error: { error: Error };
  /** state changed */
  state: { state: State };
}

/**
 * One logical connection to a cloud node over WebSocket that survives
 * reconnects (see imcloud.js for when it gives up).
 */
export declare class Client extends EventTarget {
  /** Throws a TypeError when there is no WebSocket implementation. */
  constructor(url: string, options?: ClientOptions);
  url: string;
  mid: number;
  key: string;
  /** The primary room ("" for none): the goim room of auth and changeRoom. */
  roomId: string;
  platform: string;
  accepts: number[];
  token: string;
  getToken: (() => string | Promise<string>) | null;
  reconnect: boolean;
  reconnectAfterKick: boolean;
  maxAuthRefusals: number;
  backoff: BackoffOptions;
  heartbeatMs: number;
  requestTimeoutMs: number;
  state: State;
  /** Online count of the primary room, from the last heartbeat reply. */
  online: number | null;
  /** The last op 6 the server sent, or null. */
  lastDisconnect: ClientEventMap["disconnect"] | null;
  /** When the scheduled reconnect runs (ms since the epoch), while WAITING. */
  nextRetryAt: number | null;
  recover: boolean;
  /** The detail of the last "recovery" event, or null. */
  lastRecovery: Recovery | null;
  /** When the connection's token expires (ms since the epoch: its JWT exp, or the server's last refresh reply), or null. */
  tokenExpiresAt: number | null;

  /** Adds a listener that receives the event's detail; returns a function that removes it. */
  on<K extends keyof ClientEventMap>(type: K, fn: (detail: ClientEventMap[K], event: CustomEvent<ClientEventMap[K]>) => void): () => void;
  /** Opens the connection (and keeps it open until close()). */
  connect(): void;
  /** Closes the connection and stops reconnecting. */
  close(code?: number, reason?: string): void;
  /**
   * Moves the primary room to room ("" leaves it); resolves once the server
   * replied, rejects with a RoomError when it refused (the primary room
   * stays). With recovery, carries the room's position when the client
   * holds one, so the pushes the room got since it left are replayed.
   */
  changeRoom(room: string): Promise<string>;
  /**
   * Enters room besides the rooms the connection is in; resolves on the
   * server's ok (from then on every push to the room arrives; with recovery,
   * what it got since the client's position in it is replayed first),
   * rejects with a RoomError when the server refused. The room is joined
   * again after every reconnect until leave(). Not connected: resolves at
   * once, and the room is joined after the next auth.
   */
  join(room: string): Promise<string>;
  /**
   * Leaves room, a joined one or the primary room; resolves on the server's
   * reply, rejects with a RoomError for an invalid room key. The room's
   * position is forgotten. Not connected: resolves at once.
   */
  leave(room: string): Promise<string>;
  /** The rooms the connection is in (or enters at the next auth): the primary room first, then the joined ones. */
  rooms(): string[];
  /**
   * Sends a token from getToken now (op 22), as the client does before its
   * token expires; resolves with its expiry (ms since the epoch, or null),
   * rejects with a RefreshError when the server refused it (and closes the
   * connection), or with an Error (no getToken, not connected, no reply, an
   * older server: code "ERR_UNSUPPORTED_OP").
   */
  refreshToken(): Promise<number | null>;
  /** Adds push ops to accept; resolves with the full list. */
  sub(ops: number | string | Array<number | string>): Promise<number[]>;
  /** Stops accepting push ops; resolves with the full list. */
  unsub(ops: number | string | Array<number | string>): Promise<number[]>;
  /** Sends an upstream message (op 4 by default); resolves when the server echoed it. */
  send(body: Body, op?: number): Promise<Uint8Array>;
  /** Sends a heartbeat now (the reply carries the online count). */
  heartbeat(): void;
  /**
   * The positions the client holds: its user's, its rooms' (what its next
   * auth and re-joins send) and those of rooms it moved away from with
   * changeRoom; a copy.
   */
  positions(): Positions;
}
