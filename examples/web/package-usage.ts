// A TypeScript program that uses the installed package as an application
// would. package.test.mjs compiles it with `tsc --noEmit` in a scratch
// project where @imcloud/client is installed from its `npm pack` tarball, so
// it checks imcloud.d.ts and the package's "exports" together. The lines
// marked as expected errors (in mistakes) prove that the declarations are
// not `any`.
import {
  AuthError,
  Client,
  DEFAULT_ACCEPTS,
  Op,
  RefreshError,
  RoomError,
  State,
  decodeMessage,
  decodePushAt,
  encodeFrame,
  type ClientEventMap,
  type Message,
  type Positions,
  type Recovery,
  type RoomErrorCode,
} from "@imcloud/client";

async function fetchToken(): Promise<string> {
  const resp = await fetch("/api/imcloud-token");
  return resp.text();
}

export function start(url: string): Client {
  const c = new Client(url, {
    mid: 42,
    roomId: "live://1000",
    accepts: [...DEFAULT_ACCEPTS, 1003],
    getToken: fetchToken,
    backoff: { minMs: 250, maxMs: 10_000 },
    maxAuthRefusals: 2,
  });
  c.on("message", (m: Message) => {
    const op: number = m.op;
    const body: string = m.text();
    console.log(op, body, m.json(), m.receivedAt);
  });
  c.on("auth", ({ mid, key, room_id, heartbeat }) => console.log(mid + 1, key.length, room_id, heartbeat * 1000));
  c.on("online", ({ count }) => console.log(count.toFixed(0)));
  c.on("close", ({ reconnect, delayMs }) => console.log(reconnect, delayMs ?? "stopped"));
  c.on("error", ({ error }) => {
    if (error instanceof AuthError) console.log("refused", error.reason, error.refusals);
  });
  c.on("recovery", (r: Recovery) => {
    if (r.resumed && r.recovered) console.log(`recovered ${r.replayed} missed pushes`);
    for (const s of r.streams) if (!s.recovered) console.log(s.stream, s.reason, s.epoch, s.offset.toFixed(0));
  });
  const stop: () => void = c.on("state", ({ state }) => {
    if (state === State.OPEN) void c.changeRoom("live://2000").then((room: string) => room.toUpperCase());
  });
  stop();
  c.connect();
  return c;
}

export async function useTheRest(c: Client): Promise<number[]> {
  await c.send({ hello: "world" });
  await c.send("text", Op.SEND_MSG);
  const frames = decodeMessage(encodeFrame({ op: 1000, body: "hi" }));
  const detail: ClientEventMap["disconnect"] | null = c.lastDisconnect;
  console.log(frames[0].body.byteLength, detail?.reconnectMs, c.state === "open", c.online);
  return c.sub("1005,1006");
}

export function recovery(url: string, saved: Positions): Positions {
  const c = new Client(url, { recover: true, positions: saved });
  c.on("message", (m) => {
    if (m.stream !== null && m.offset !== null) console.log(m.stream.length, m.offset + 1, m.epoch, m.replayed === true);
  });
  const push = decodePushAt(new Uint8Array(20));
  console.log(push.op, push.stream, push.body.byteLength, c.lastRecovery?.replayed, Op.PUSH_AT, Op.RECOVERY);
  return c.positions();
}

export async function rooms(c: Client): Promise<string[]> {
  c.on("join", ({ room, rejoin }) => console.log(room.length, rejoin === true));
  c.on("leave", ({ room }) => console.log(room.length));
  c.on("refused", ({ room, code, error }) => console.log(room, code, error.op));
  c.on("message", (m) => console.log(m.room?.length ?? "not a room stream's push"));
  try {
    await c.join("live://7");
  } catch (err) {
    if (err instanceof RoomError) {
      const code: RoomErrorCode | string = err.code;
      console.log(err.op, err.room, code);
    }
  }
  await c.leave("live://7").then((room: string) => room.length);
  return c.rooms();
}

export function control(url: string): Client {
  const c = new Client(url, { getToken: fetchToken, reconnectAfterKick: false });
  c.on("kicked", ({ reason }) => console.log(`logged out: ${reason.toUpperCase()}`));
  c.on("refresh", ({ ok, expiresAt, error }) => console.log(ok ? new Date(expiresAt ?? 0).toISOString() : error.length));
  void c.refreshToken().then(
    (at: number | null) => console.log(at ?? "no expiry", c.tokenExpiresAt),
    (err: unknown) => console.log(err instanceof RefreshError ? err.error : String(err)),
  );
  console.log(Op.REFRESH, Op.REFRESH_REPLY, c.reconnectAfterKick);
  return c;
}

export function mistakes(c: Client): void {
  // @ts-expect-error: no such event
  c.on("mesage", () => {});
  // @ts-expect-error: getToken returns a string or a Promise of one
  new Client("ws://h/sub", { getToken: () => 42 });
  // @ts-expect-error: accepts are numbers or a comma-separated string
  new Client("ws://h/sub", { accepts: [true] });
  // @ts-expect-error: the online detail has no room
  c.on("online", ({ room }) => room);
  // @ts-expect-error: a position's offset is a number
  new Client("ws://h/sub", { positions: { "u:1": { epoch: "e", offset: "7" } } });
  // @ts-expect-error: a message's offset may be null
  c.on("message", (m) => m.offset.toFixed(0));
  // @ts-expect-error: a message's room may be null
  c.on("message", (m) => m.room.length);
  // @ts-expect-error: join takes one room key
  void c.join(["live://1", "live://2"]);
  // @ts-expect-error: the refused detail's code is a string
  c.on("refused", ({ code }) => code.toFixed(0));
  // @ts-expect-error: a refresh's expiresAt may be null
  c.on("refresh", ({ expiresAt }) => expiresAt.toFixed(0));
  // @ts-expect-error: reconnectAfterKick is a boolean
  new Client("ws://h/sub", { reconnectAfterKick: "yes" });
}
