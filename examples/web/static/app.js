// The demo page: one imcloud.js Client, a feed of the pushes it receives with
// their latency, and a form that pushes through the HTTP API of the origin the
// page came from. Recovery is on: after a reconnect the page says how many
// missed pushes came back (or why not all could), marks them in the feed, and
// keeps its positions in sessionStorage so that a reload recovers too. Besides
// its room (the primary one, which Move changes), the connection may join
// more rooms; the page lists them, and each push of a room says which one.
// The log says when the token was refreshed and when the application kicked
// the connection (with its reason; a kicked client stays disconnected).
//
// Query string (all optional):
//   ws=ws://host:port/sub   WebSocket address (default: the one the server
//                           advertises in /config.json, else ws://<page host>:3102/sub)
//   api=http://host:port    push API base (default: this page's origin)
//   mid=42 room=live://1000 token=... accepts=1000,1001
//   token_url=/api/token    fetch the token from there (GET, the body) before every
//                           connection and before it expires, instead of token
//   join=live://2000,gift://1  rooms to join besides room, at the first connect
//   autoconnect=0           do not connect on load
//   recover=0               connect without recovery
import { Client, RoomError, State } from "./imcloud.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_FEED = 200;
const MAX_LOG = 50;
const POSITIONS_KEY = "imcloud-demo-positions";
const joinParam = (params.get("join") || "").split(",").map((s) => s.trim()).filter(Boolean);
const tokenURL = params.get("token_url") || "";

// pageHost is this page's host name, bracketed when it is an IPv6 address.
function pageHost() {
  const host = location.hostname || "localhost";
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

// serverWsURL is the WebSocket address the server that served this page
// advertises (/config.json, see web.Config): a URL whose empty host
// ("ws://:3102/sub") stands for this page's host. null when the server says
// nothing (a page served elsewhere, an old server).
async function serverWsURL() {
  let ws;
  try {
    const resp = await fetch("config.json", { cache: "no-store" });
    if (!resp.ok) return null;
    ({ ws } = await resp.json());
  } catch {
    return null;
  }
  if (typeof ws !== "string" || ws === "") return null;
  return ws.replace(/^(wss?:\/\/)(?=:)/, `$1${pageHost()}`);
}

function defaultWsURL() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${pageHost()}:3102/sub`;
}

const apiBase = (params.get("api") || location.origin).replace(/\/+$/, "");

$("ws-url").value = params.get("ws") || (await serverWsURL()) || defaultWsURL();
$("mid").value = params.get("mid") || String(1 + Math.floor(Math.random() * 9999));
$("room").value = params.get("room") ?? "live://1000";
$("token").value = params.get("token") || "";
$("accepts").value = params.get("accepts") || "1000,1001,1002";
$("push-room").value = $("room").value;
$("push-mids").value = $("mid").value;
$("curl-hint").textContent = `curl -d 'hello' '${apiBase}/goim/push/room?operation=1000&type=live&room=1000'`;

/** @type {Client|null} */
let client = null;
let pushCount = 0;
let countdown = null;
let firstConnect = true;
/** The joined rooms the server confirmed on the current connection. */
const confirmed = new Set();
/** The user streams the server reported (op 25) to the current client. */
const userStreams = new Set();

// ---- connection log ----

function log(text, kind = "") {
  const li = document.createElement("li");
  if (kind) li.className = kind;
  const time = document.createElement("time");
  time.textContent = clock(Date.now());
  li.append(time, " ", text);
  $("log").prepend(li);
  while ($("log").children.length > MAX_LOG) $("log").lastElementChild.remove();
}

function clock(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// ---- status ----

function setStatus(state, label) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = label ?? state;
  const connected = client !== null;
  $("connect").disabled = connected;
  $("disconnect").disabled = !connected;
  $("change-room").disabled = state !== State.OPEN;
  $("join").disabled = state !== State.OPEN;
  for (const id of ["ws-url", "mid", "token", "accepts"]) $(id).disabled = connected;
  if (state !== State.OPEN) confirmed.clear(); // joined again after the next auth
  renderRooms();
}

function showRoom(room) {
  $("room-current").textContent = room || "(none)";
  $("room").value = room;
}

// ---- rooms ----

// renderRooms lists the rooms the client is in: its primary room, then the
// joined ones, each joined "joining…" until the server confirms it on this
// connection, with a Leave button.
function renderRooms() {
  const c = client;
  const items = [];
  for (const room of c ? c.rooms() : []) {
    const state = room === c.roomId ? "primary" : confirmed.has(room) ? "joined" : "joining";
    const li = document.createElement("li");
    li.dataset.room = room;
    li.dataset.state = state;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = room;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = state === "joining" ? "joining…" : state;
    const leave = document.createElement("button");
    leave.type = "button";
    leave.className = "secondary small leave";
    leave.textContent = "Leave";
    leave.disabled = c.state !== State.OPEN;
    leave.addEventListener("click", () => leaveRoom(room));
    li.append(name, tag, leave);
    items.push(li);
  }
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = client ? "none" : "not connected";
    items.push(li);
  }
  $("rooms").replaceChildren(...items);
}

async function joinRoom(room) {
  const c = client;
  if (!c || room === "") return;
  const joined = c.join(room);
  renderRooms(); // listed from now on, as joining
  try {
    await joined;
    $("join-room").value = "";
  } catch (err) {
    log(err instanceof RoomError ? `the server refused room ${room}: ${err.code}` : `join ${room} failed: ${err.message}`, "err");
  }
  if (client === c) renderRooms();
}

async function leaveRoom(room) {
  const c = client;
  if (!c) return;
  const left = c.leave(room);
  renderRooms();
  try {
    await left;
  } catch (err) {
    log(`leave ${room} failed: ${err.message}`, "err");
  }
  if (client === c) renderRooms();
}

function stopCountdown() {
  clearInterval(countdown);
  countdown = null;
}

// ---- recovery ----

// saved is what a client of the same address and user left in this tab's
// sessionStorage (a reload, or Disconnect): its positions and the rooms it
// had joined, or nothing.
function saved(ws, mid) {
  try {
    const s = JSON.parse(sessionStorage.getItem(POSITIONS_KEY) ?? "null");
    if (s && s.ws === ws && s.mid === mid) return { positions: s.positions ?? {}, rooms: Array.isArray(s.rooms) ? s.rooms : [] };
  } catch {
    // storage blocked or garbled: start afresh
  }
  return { positions: {}, rooms: [] };
}

function savePositions() {
  const c = client;
  if (!c) return;
  const rooms = c.rooms().filter((room) => room !== c.roomId);
  try {
    sessionStorage.setItem(POSITIONS_KEY, JSON.stringify({ ws: c.url, mid: c.mid, positions: c.recover ? c.positions() : {}, rooms }));
  } catch {
    // storage blocked or full: a reload starts afresh
  }
}

// showRecovery says how the last recovery went: after a reconnect (or a
// reload) how many missed pushes came back, or which streams could not be
// recovered and why.
function showRecovery({ streams, recovered, replayed, resumed }) {
  const el = $("recovery");
  const names = streams.map((s) => s.stream).join(", ");
  for (const s of streams) if (s.stream.startsWith("u:")) userStreams.add(s.stream);
  // Every stream the page follows: its user's and its rooms'.
  const following = [...userStreams, ...(client?.rooms() ?? []).map((room) => `r:${room}`)].join(", ");
  const why = streams
    .filter((s) => !s.recovered)
    .map((s) => `${s.stream}: ${s.reason || "unknown reason"}`)
    .join("; ");
  if (!resumed && recovered) {
    log(`recovery on, following ${names || "no stream"}`);
    if (el.dataset.state === "") el.textContent = `on, following ${following || "no stream"}`;
    return;
  }
  if (!resumed) {
    // Nothing was asked, yet not recovered: the server keeps no history
    // (unavailable), so a reconnect will not bring missed pushes back.
    el.dataset.state = "incomplete";
    el.textContent = `unavailable (${why}): pushes missed while disconnected will not come back`;
    log(`recovery unavailable: ${why}`, "warn");
    return;
  }
  const missed = `${replayed} missed push${replayed === 1 ? "" : "es"}`;
  el.dataset.replayed = String(replayed);
  if (recovered) {
    el.dataset.state = "recovered";
    el.textContent = `recovered ${missed}`;
    log(`recovered ${missed} (${names})`, "ok");
    return;
  }
  el.dataset.state = "incomplete";
  el.textContent = `not recovered (${why}); ${missed} replayed, some may be lost`;
  log(`recovery incomplete: ${why}; ${missed} replayed`, "warn");
}

// ---- connect ----

function connect() {
  if (client) return;
  const url = $("ws-url").value.trim();
  const mid = Number($("mid").value);
  const recover = params.get("recover") !== "0";
  const kept = saved(url, mid);
  const c = new Client(url, {
    mid,
    roomId: $("room").value.trim(),
    token: $("token").value,
    getToken: tokenURL ? fetchToken : undefined,
    accepts: $("accepts").value,
    recover,
    positions: recover ? kept.positions : {},
  });
  client = c;
  confirmed.clear();
  userStreams.clear();
  // The rooms joined before (a reload, Disconnect) and, the first time, those
  // of the address: joined right after the auth.
  for (const room of [...kept.rooms, ...(firstConnect ? joinParam : [])]) void c.join(room);
  firstConnect = false;
  $("recovery").textContent = recover ? "asked for (no answer from the server yet)" : "off";
  $("recovery").dataset.state = "";
  c.on("state", ({ state }) => {
    if (client !== c) return;
    if (state === State.WAITING) return; // the close handler shows the countdown
    stopCountdown();
    const labels = { [State.OPEN]: "connected", [State.CONNECTING]: "connecting…", [State.IDLE]: "disconnected" };
    setStatus(state, labels[state]);
  });
  c.on("open", ({ url }) => log(`socket open to ${url}, sending auth`));
  c.on("auth", ({ mid, key, room_id: room, heartbeat }) => {
    log(`authenticated as mid ${mid}, key ${key}`, "ok");
    $("key").textContent = key || "–";
    $("heartbeat").textContent = `every ${heartbeat} s`;
    $("push-mids").placeholder = String(mid);
    showRoom(room);
    renderRooms();
  });
  c.on("online", ({ count }) => {
    $("online").textContent = String(count);
  });
  c.on("room", ({ room }) => {
    log(room ? `moved to room ${room}` : "left the primary room", "ok");
    showRoom(room);
    renderRooms();
  });
  c.on("join", ({ room, rejoin }) => {
    confirmed.add(room);
    log(`joined room ${room}${rejoin ? " after the auth" : ""}`, "ok");
    if (client === c) renderRooms();
  });
  c.on("leave", ({ room }) => {
    confirmed.delete(room);
    log(`left room ${room}`, "ok");
    if (client === c) renderRooms();
  });
  c.on("refused", ({ room, code }) => {
    confirmed.delete(room);
    log(`the server refused room ${room}: ${code}`, "err");
    if (client === c) renderRooms();
  });
  c.on("disconnect", ({ reason, reconnectMs }) => {
    const hint = reconnectMs > 0 ? ` (reconnect after ${reconnectMs} ms)` : ""; // 0: no hint
    $("disconnect-reason").textContent = `${reason || "no reason given"}${hint}`;
    log(`server disconnect: ${reason}${hint}`, "warn");
  });
  c.on("kicked", ({ reason }) => {
    $("disconnect-reason").textContent = `kicked: ${reason}`;
    log(`kicked: ${reason}`, "err");
  });
  c.on("refresh", ({ ok, expiresAt, error }) => {
    if (ok) log(`token refreshed${expiresAt === null ? "" : `, valid until ${clock(expiresAt)}`}`, "ok");
    else log(`token refresh refused: ${error}`, "err");
  });
  c.on("close", ({ code, reason, reconnect, delayMs }) => {
    if (client !== c) return;
    $("online").textContent = "–";
    const why = `socket closed (code ${code}${reason ? `, ${reason}` : ""})`;
    if (!reconnect) {
      // The client gave up (the error event said why): the form is usable again.
      log(why);
      client = null;
      setStatus(State.IDLE, "disconnected");
      return;
    }
    log(`${why}; reconnecting in ${(delayMs / 1000).toFixed(1)} s`, "warn");
    stopCountdown();
    const tick = () => {
      const left = Math.max(0, (c.nextRetryAt ?? 0) - Date.now());
      setStatus(State.WAITING, `reconnecting in ${(left / 1000).toFixed(1)} s`);
    };
    tick();
    countdown = setInterval(tick, 100);
  });
  c.on("error", ({ error }) => log(error.message, "err"));
  c.on("recovery", (r) => {
    if (client === c) showRecovery(r);
  });
  c.on("message", (m) => addPush(m));
  setStatus(State.CONNECTING, "connecting…");
  c.connect();
}

// fetchToken is the getToken of a page given token_url.
async function fetchToken() {
  const resp = await fetch(tokenURL, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${tokenURL}: ${resp.status} ${resp.statusText}`);
  return (await resp.text()).trim();
}

function disconnect() {
  const c = client;
  if (!c) return;
  stopCountdown();
  savePositions(); // Connect again continues from here (rooms too): a way to try recovery
  client = null;
  c.close();
  setStatus(State.IDLE, "disconnected");
  $("online").textContent = "–";
  $("key").textContent = "–";
}

// ---- the feed ----

function addPush(m) {
  pushCount++;
  $("push-count").textContent = String(pushCount);
  $("empty").hidden = true;

  const raw = m.text();
  const json = m.json();
  let shown = raw;
  let latency = null;
  if (json && typeof json === "object" && Number.isFinite(json.sent_ms)) {
    latency = m.receivedAt - json.sent_ms;
    if (typeof json.text === "string" && Object.keys(json).length === 2) shown = json.text;
  }

  const li = document.createElement("li");
  li.className = "push";
  li.dataset.op = String(m.op);
  if (latency !== null) li.dataset.latency = String(latency);
  if (m.replayed) li.dataset.replayed = "true";
  const meta = document.createElement("div");
  meta.className = "meta";
  const op = document.createElement("span");
  op.className = "op";
  op.textContent = `op ${m.op}`;
  // A room push says its room when it came with its stream (recovery on);
  // a plain one does not: the page's only room is a fair guess, no more.
  const room = document.createElement("span");
  room.className = "in-room";
  const rooms = client ? client.rooms() : [];
  room.textContent = m.room ?? (m.stream === null && rooms.length === 1 ? rooms[0] : "");
  room.title = m.room !== null ? "the room the push came to" : "the room this page was in when the push arrived";
  const when = document.createElement("time");
  when.textContent = clock(m.receivedAt);
  const lat = document.createElement("span");
  lat.className = latency === null ? "latency none" : "latency";
  lat.textContent = latency === null ? "no sent_ms" : `${latency} ms`;
  lat.title = latency === null ? "the body has no sent_ms field; showing arrival time" : "now − sent_ms";
  meta.append(op, room);
  if (m.stream !== null) {
    const stream = document.createElement("span");
    stream.className = "stream";
    stream.textContent = `${m.stream} #${m.offset}`;
    stream.title = `the push's stream and its position there (epoch ${m.epoch})`;
    meta.append(stream);
  }
  if (m.replayed) {
    const replayed = document.createElement("span");
    replayed.className = "replayed";
    replayed.textContent = "replayed";
    replayed.title = "missed while disconnected, replayed from the stream's history";
    meta.append(replayed);
  }
  meta.append(when, lat);
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = shown === "" ? "(empty body)" : shown;
  li.append(meta, body);
  $("pushes").prepend(li);
  while ($("pushes").children.length > MAX_FEED) $("pushes").lastElementChild.remove();
}

// ---- pushing through the HTTP API ----

function pushURL(target, op) {
  const q = new URLSearchParams({ operation: String(op) });
  if (target === "room") {
    const room = $("push-room").value.trim() || $("room").value.trim();
    const i = room.indexOf("://");
    if (i <= 0) throw new Error(`room "${room}" is not of the form type://id`);
    q.set("type", room.slice(0, i));
    q.set("room", room.slice(i + 3));
    return `${apiBase}/goim/push/room?${q}`;
  }
  if (target === "mids") {
    const mids = ($("push-mids").value.trim() || $("mid").value).split(",").map((s) => s.trim()).filter(Boolean);
    if (mids.length === 0) throw new Error("no user ids");
    for (const mid of mids) {
      if (!/^\d+$/.test(mid)) throw new Error(`user id "${mid}" is not a number`);
      q.append("mids", mid);
    }
    return `${apiBase}/goim/push/mids?${q}`;
  }
  return `${apiBase}/goim/push/all?${q}`;
}

async function push() {
  const result = $("push-result");
  const target = new FormData($("push-form")).get("target");
  const text = $("push-body").value;
  const body = $("push-stamp").checked ? JSON.stringify({ text, sent_ms: Date.now() }) : text;
  let url;
  try {
    url = pushURL(target, Number($("push-op").value));
  } catch (err) {
    result.className = "result err";
    result.textContent = err.message;
    return;
  }
  result.className = "result";
  result.textContent = "sending…";
  try {
    const resp = await fetch(url, { method: "POST", body });
    const reply = (await resp.text()).trim();
    result.className = resp.ok ? "result ok" : "result err";
    result.textContent = `${resp.status} ${resp.statusText}${reply ? `: ${reply.slice(0, 200)}` : ""}`;
  } catch (err) {
    result.className = "result err";
    result.textContent = `failed: ${err.message}`;
  }
}

function syncTarget() {
  const target = new FormData($("push-form")).get("target");
  $("push-room-field").hidden = target !== "room";
  $("push-mids-field").hidden = target !== "mids";
}

// ---- wiring ----

$("connect-form").addEventListener("submit", (e) => {
  e.preventDefault();
  connect();
});
$("disconnect").addEventListener("click", disconnect);
$("room-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!client) return;
  const room = $("new-room").value.trim();
  try {
    await client.changeRoom(room);
    showRoom(room);
    $("push-room").value = room;
  } catch (err) {
    log(err instanceof RoomError ? `the server refused room ${room}: ${err.code}` : `change room failed: ${err.message}`, "err");
  }
});
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  joinRoom($("join-room").value.trim());
});
$("push-form").addEventListener("submit", (e) => {
  e.preventDefault();
  push();
});
$("push-form").addEventListener("change", syncTarget);
$("clear").addEventListener("click", () => {
  $("pushes").replaceChildren();
  pushCount = 0;
  $("push-count").textContent = "0";
  $("empty").hidden = false;
});

syncTarget();
showRoom($("room").value);
setStatus(State.IDLE, "disconnected");
if (params.get("autoconnect") !== "0") connect();

// A reload of this tab continues from where this page was.
addEventListener("pagehide", savePositions);

// For tests and the curious: the live client.
window.imcloudDemo = { get client() { return client; } };
