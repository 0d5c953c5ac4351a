// End-to-end test of the demo page in a real browser: Debian's chromium,
// headless, driven by playwright-core, against a running examples/server.
//
//	cd examples/web && npm ci && node --test e2e/browser.test.mjs
//
// The server binary is $IMCLOUD_SERVER_BIN, or built here from ./examples/server.
// Without chromium, playwright-core or a buildable server the test skips and
// says why; with IMCLOUD_REQUIRE_BACKENDS=1 (CI) it fails instead.
// A screenshot of the page (wide and phone-sized) and the server's log are
// left in e2e/artifacts/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:net";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Op, decodeFrames, encodeBatch, encodeFrame, encodePushAt, text } from "../imcloud.js";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");
const artifacts = join(here, "artifacts");
const chromiumPath = process.env.IMCLOUD_CHROMIUM || "/usr/bin/chromium";
const required = process.env.IMCLOUD_REQUIRE_BACKENDS === "1";

// Flags a closed network needs (no background fetches, no QUIC, no updates).
const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** unavailable skips the test (or fails it under IMCLOUD_REQUIRE_BACKENDS=1). */
function unavailable(t, why) {
  if (required) assert.fail(`browser test cannot run: ${why}`);
  t.skip(why);
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** serverBinary returns the server to run, or {skip: reason}. */
function serverBinary(tmp) {
  if (process.env.IMCLOUD_SERVER_BIN) return { bin: process.env.IMCLOUD_SERVER_BIN };
  const dir = join(repoRoot, "examples/server");
  const hasGo = existsSync(dir) && readdirSync(dir).some((f) => f.endsWith(".go") && !f.endsWith("_test.go"));
  if (!hasGo) return { skip: "examples/server has no Go files yet; set IMCLOUD_SERVER_BIN or write the server" };
  const bin = join(tmp, "imcloud-server");
  const r = spawnSync("go", ["build", "-o", bin, "./examples/server"], { cwd: repoRoot, encoding: "utf8" });
  if (r.error) return { skip: `cannot run go build: ${r.error.message}` };
  if (r.status !== 0) return { skip: `go build ./examples/server failed:\n${(r.stderr || r.stdout).trim().split("\n").slice(0, 15).join("\n")}` };
  return { bin };
}

/** Server runs the server binary on fixed loopback ports and logs to a file; auth are its auth flags. */
class Server {
  constructor(bin, ports, logPath, auth = ["-auth", "dev"]) {
    this.bin = bin;
    this.ports = ports;
    this.auth = auth;
    this.log = createWriteStream(logPath);
    this.output = "";
  }

  get args() {
    const { tcp, ws, http } = this.ports;
    return ["-tcp-addr", `127.0.0.1:${tcp}`, "-ws-addr", `127.0.0.1:${ws}`, "-http-addr", `127.0.0.1:${http}`, ...this.auth];
  }

  async start() {
    this.log.write(`\n=== start ${this.bin} ${this.args.join(" ")}\n`);
    const p = spawn(this.bin, this.args, { stdio: ["ignore", "pipe", "pipe"] });
    this.proc = p;
    this.exited = new Promise((res) => p.on("exit", (code, signal) => res({ code, signal })));
    const take = (d) => {
      this.log.write(d);
      this.output = (this.output + d).slice(-8000);
    };
    p.stdout.on("data", take);
    p.stderr.on("data", take);
    const deadline = Date.now() + 20000;
    let early = null;
    this.exited.then((e) => (early = e));
    while (Date.now() < deadline) {
      if (early) throw new Error(`server exited early (${JSON.stringify(early)}):\n${this.output}`);
      try {
        const r = await fetch(`http://127.0.0.1:${this.ports.http}/`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`server did not answer on its HTTP port within 20 s:\n${this.output}`);
  }

  /** waitForLog waits for a line of the server's log to match re; returns the match. */
  async waitForLog(re, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.output.match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`no ${re} in the server's log within ${timeoutMs} ms:\n${this.output}`);
      await sleep(50);
    }
  }

  /** drain sends SIGTERM and waits for the process to exit. */
  async drain(timeoutMs = 20000) {
    this.log.write("\n=== SIGTERM\n");
    this.proc.kill("SIGTERM");
    const r = await Promise.race([this.exited, sleep(timeoutMs, null, { ref: false })]);
    if (r === null) {
      this.proc.kill("SIGKILL");
      throw new Error(`server did not exit within ${timeoutMs} ms of SIGTERM:\n${this.output}`);
    }
    return r;
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGKILL");
      await this.exited;
    }
    this.log.end();
  }
}

async function pushAPI(ports, path, body) {
  const r = await fetch(`http://127.0.0.1:${ports.http}${path}`, { method: "POST", body });
  const text = await r.text();
  assert.equal(r.status, 200, `POST ${path}: ${r.status} ${text}`);
  return text;
}

const stamp = (text) => JSON.stringify({ text, sent_ms: Date.now() });

/** inHistory waits until the history route shows a push whose body holds text in the stream query names. */
async function inHistory(ports, query, text, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${ports.http}/goim/history?${query}&n=100`);
    const reply = await r.json();
    assert.equal(r.status, 200, `GET /goim/history?${query}: ${JSON.stringify(reply)}`);
    if (reply.data.entries.some((e) => e.body?.includes(text))) return;
    if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)} in the history of ${query} within ${timeoutMs} ms: ${JSON.stringify(reply.data)}`);
    await sleep(50);
  }
}

/**
 * ScriptedServer plays a recovering cloud node for a page, through
 * playwright's WebSocket routing: each connection's auth body is handed to
 * the next of scripts, which answers with frames (a Buffer each: one frame
 * alone, or an op 9 batch, as a node sends them). Any other frame but a
 * heartbeat is recorded in requests ({op, body}, body as text) and handed
 * to onRequest, when given, which answers likewise.
 */
class ScriptedServer {
  constructor(scripts, onRequest = null) {
    this.scripts = scripts;
    this.onRequest = onRequest;
    this.auths = [];
    this.requests = [];
    this.sockets = [];
  }

  route(ws) {
    this.sockets.push(ws);
    ws.onMessage((data) => {
      for (const f of decodeFrames(new Uint8Array(Buffer.from(data)))) {
        if (f.op !== Op.AUTH) {
          if (f.op === Op.HEARTBEAT) continue;
          this.requests.push({ op: f.op, body: text(f.body) });
          for (const frame of this.onRequest ? this.onRequest(f) : []) ws.send(Buffer.from(frame));
          continue;
        }
        const auth = JSON.parse(text(f.body));
        const script = this.scripts[this.auths.length];
        this.auths.push(auth);
        const reply = encodeFrame({ op: Op.AUTH_REPLY, ver: 2, seq: f.seq, body: JSON.stringify({ mid: auth.mid, key: "k", room_id: auth.room_id, heartbeat: 30 }) });
        for (const frame of [reply, ...(script ? script(auth) : [])]) ws.send(Buffer.from(frame));
      }
    });
  }
}

/** hs256 mints a token as the server's -token-secret verifies it. */
function hs256(secret, claims) {
  const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const signed = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(claims)}`;
  return `${signed}.${createHmac("sha256", secret).update(signed).digest("base64url")}`;
}

const scriptedPush = (push) => ({ op: Op.PUSH_AT, ver: 2, body: encodePushAt(push) });
const scriptedRecovery = (streams) => encodeFrame({ op: Op.RECOVERY, ver: 2, body: JSON.stringify({ streams }) });

test("demo page in chromium: connect, push, ChangeRoom, drain and reconnect", { timeout: 180000 }, async (t) => {
  if (!existsSync(chromiumPath)) return unavailable(t, `${chromiumPath} not found (apt-get install chromium)`);
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (err) {
    return unavailable(t, `playwright-core is not installed (cd examples/web && npm ci): ${err.message}`);
  }
  const tmp = mkdtempSync(join(tmpdir(), "imcloud-e2e-"));
  let server = null;
  let context = null;
  t.after(async () => {
    await context?.close().catch(() => {});
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });
  const built = serverBinary(tmp);
  if (built.skip) return unavailable(t, built.skip);

  mkdirSync(artifacts, { recursive: true });
  const ports = { tcp: await freePort(), ws: await freePort(), http: await freePort() };
  server = new Server(built.bin, ports, join(artifacts, "server.log"));
  await server.start();

  context = await chromium.launchPersistentContext(join(tmp, "profile"), {
    executablePath: chromiumPath,
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1100, height: 860 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on("crash", () => pageErrors.push("the page crashed"));
  page.on("close", () => pageErrors.push("the page closed"));
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (msg) => {
    // A reconnect attempt while the server is down logs a failed WebSocket
    // connection; that is expected here.
    if (msg.type() === "error" && !/WebSocket connection to .* failed/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
  });

  const shootPage = async (p, name) => {
    await p.evaluate(() => window.scrollTo(0, 0)).catch(() => {});
    await p.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true }).catch(() => {});
  };
  const shoot = (name) => shootPage(page, name);
  const wsURL = `ws://127.0.0.1:${ports.ws}/sub`;
  const pushes = page.locator("#pushes li.push");
  const pushWith = (text) => pushes.filter({ hasText: text });

  try {
    await t.test("the page at the startup log's address connects to the server's WebSocket port", async () => {
      // Every port is a free one, none the default: the page must learn the
      // WebSocket address from the server, not assume :3102.
      const [, hint] = await server.waitForLog(/demo page (http:\/\/[^\s"]+)/);
      assert.equal(hint, `http://127.0.0.1:${ports.http}/`);
      await page.goto(`${hint}?mid=4242&room=live://1000`);
      assert.equal(await page.locator("#ws-url").inputValue(), wsURL);
      await page.locator('#status[data-state="open"]').waitFor({ timeout: 15000 });
      assert.notEqual(await page.locator("#key").textContent(), "–");
      await page.waitForFunction(() => document.querySelector("#online").textContent === "1", null, { timeout: 10000 });
      assert.equal(await page.locator("#room-current").textContent(), "live://1000");
      // The server keeps a history: the page follows its user's stream and its room's.
      await page.waitForFunction(() => document.querySelector("#recovery").textContent === "on, following u:4242, r:live://1000", null, { timeout: 10000 });
    });

    await t.test("imcloud.js gives up with an AuthError when the server keeps refusing its auth", async () => {
      // The server refuses a key over 128 bytes, whatever the authenticator.
      const result = await page.evaluate(async (url) => {
        const { Client } = await import("/imcloud.js");
        const c = new Client(url, { key: "k".repeat(200), backoff: { minMs: 20, maxMs: 50 } });
        const closes = [];
        c.on("close", ({ reconnect }) => closes.push(reconnect));
        const error = await new Promise((resolve) => {
          c.on("error", ({ error }) => resolve(error));
          c.connect();
        });
        await new Promise((r) => setTimeout(r, 300)); // a retry, if any, would have begun
        return { name: error.name, refusals: error.refusals, message: error.message, closes, state: c.state };
      }, wsURL);
      assert.equal(result.name, "AuthError", result.message);
      assert.equal(result.refusals, 3);
      assert.deepEqual(result.closes, [true, true, false]);
      assert.equal(result.state, "idle");
    });

    await t.test("a push through the HTTP API appears with its latency", async () => {
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=1000", stamp("hello room 1000"));
      const item = pushWith("hello room 1000");
      await item.waitFor({ timeout: 10000 });
      assert.equal(await item.getAttribute("data-op"), "1000");
      const latency = Number(await item.getAttribute("data-latency"));
      assert.ok(latency >= 0 && latency < 10000, `latency ${latency}`);
      assert.match(await item.locator(".latency").textContent(), /^\d+ ms$/);

      // A body without sent_ms shows its arrival time instead.
      await pushAPI(ports, "/goim/push/room?operation=1001&type=live&room=1000", "plain text push");
      const plain = pushWith("plain text push");
      await plain.waitFor({ timeout: 10000 });
      assert.equal(await plain.getAttribute("data-latency"), null);
      assert.equal(await plain.locator(".latency").textContent(), "no sent_ms");
    });

    await t.test("the page's push form reaches a user and everyone", async () => {
      await page.locator('input[name="target"][value="mids"]').check();
      await page.locator("#push-mids").fill("4242");
      await page.locator("#push-body").fill("to user 4242 from the form");
      await page.locator("#push").click();
      await pushWith("to user 4242 from the form").waitFor({ timeout: 10000 });
      await page.waitForFunction(() => document.querySelector("#push-result").textContent.startsWith("200"));

      await page.locator('input[name="target"][value="all"]').check();
      await page.locator("#push-op").fill("1002");
      await page.locator("#push-body").fill("broadcast from the form");
      await page.locator("#push").click();
      const item = pushWith("broadcast from the form");
      await item.waitFor({ timeout: 10000 });
      assert.equal(await item.getAttribute("data-op"), "1002");
    });

    await t.test("ChangeRoom moves the page to another room's pushes", async () => {
      await page.locator("#new-room").fill("live://2000");
      await page.locator("#change-room").click();
      await page.waitForFunction(() => document.querySelector("#room-current").textContent === "live://2000", null, { timeout: 10000 });
      await page.waitForFunction(() => document.querySelector("#online").textContent === "1", null, { timeout: 10000 });
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=1000", stamp("left behind in 1000"));
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("hello room 2000"));
      await pushWith("hello room 2000").waitFor({ timeout: 10000 });
      await sleep(300); // room 1000's push, if wrongly delivered, would be here by now
      assert.equal(await pushWith("left behind in 1000").count(), 0, "a push to the old room reached the page");
    });

    await t.test("pushes sent while the page was disconnected come back when it connects again", async () => {
      await page.locator("#disconnect").click();
      await page.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
      const missed = ["missed in room 2000", "missed by user 4242"];
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp(missed[0]));
      await pushAPI(ports, "/goim/push/mids?operation=1000&mids=4242", stamp(missed[1]));
      await inHistory(ports, "type=live&room=2000", missed[0]);
      await inHistory(ports, "mid=4242", missed[1]);
      assert.equal(await pushWith(missed[0]).count(), 0);

      await page.locator("#connect").click(); // from the positions the page kept
      await page.locator('#recovery[data-state="recovered"]').waitFor({ timeout: 10000 });
      assert.equal(await page.locator("#recovery").textContent(), "recovered 2 missed pushes");
      for (const text of missed) {
        assert.equal(await pushWith(text).count(), 1, text);
        assert.equal(await pushWith(text).getAttribute("data-replayed"), "true", text);
      }
      await shoot("recovered");

      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("live after the recovery"));
      await pushWith("live after the recovery").waitFor({ timeout: 10000 });
      assert.equal(await pushWith("live after the recovery").getAttribute("data-replayed"), null);

      // Back to room 1000: the ChangeRoom carries the room's position, and the
      // push it got while the page was in room 2000 is replayed.
      const move = async (room) => {
        await page.locator("#new-room").fill(room);
        await page.locator("#change-room").click();
        await page.waitForFunction((r) => document.querySelector("#room-current").textContent === r, room, { timeout: 10000 });
      };
      await move("live://1000");
      await page.waitForFunction(() => document.querySelector("#recovery").textContent === "recovered 1 missed push", null, { timeout: 10000 });
      assert.equal(await pushWith("left behind in 1000").count(), 1);
      assert.equal(await pushWith("left behind in 1000").getAttribute("data-replayed"), "true");
      await move("live://2000");
      await page.waitForFunction(() => document.querySelector("#recovery").textContent === "recovered 0 missed pushes", null, { timeout: 10000 });
    });

    await t.test("rooms: the page joins a room, its pushes say their room, it is joined again after a reconnect, a refusal is said, and Leave stops them", async () => {
      const joinWithForm = async (room) => {
        await page.locator("#join-room").fill(room);
        await page.locator("#join").click();
      };
      await joinWithForm("live://3000");
      await page.locator('#rooms li[data-room="live://3000"][data-state="joined"]').waitFor({ timeout: 10000 });
      assert.deepEqual(
        await page.$$eval("#rooms li[data-room]", (lis) => lis.map((li) => [li.dataset.room, li.dataset.state])),
        [["live://2000", "primary"], ["live://3000", "joined"]],
      );
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=3000", stamp("hello joined room 3000"));
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("hello primary room 2000"));
      for (const [text, room] of [["hello joined room 3000", "live://3000"], ["hello primary room 2000", "live://2000"]]) {
        await pushWith(text).waitFor({ timeout: 10000 });
        assert.equal(await pushWith(text).locator(".in-room").textContent(), room, text);
      }

      // Disconnect, a push to the joined room, Connect: the page joins the
      // room again from its position, and the push comes back.
      await page.locator("#disconnect").click();
      await page.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=3000", stamp("missed in joined room 3000"));
      await inHistory(ports, "type=live&room=3000", "missed in joined room 3000");
      await page.locator("#connect").click();
      const missed = pushWith("missed in joined room 3000");
      await missed.waitFor({ timeout: 10000 });
      assert.equal(await missed.getAttribute("data-replayed"), "true");
      assert.equal(await missed.locator(".in-room").textContent(), "live://3000");
      await page.locator('#rooms li[data-room="live://3000"][data-state="joined"]').waitFor({ timeout: 10000 });
      await page.locator("#log li.ok").filter({ hasText: "joined room live://3000 after the auth" }).waitFor({ timeout: 10000 });

      await joinWithForm("nope");
      await page.locator("#log li.err").filter({ hasText: "the server refused room nope: invalid_room" }).waitFor({ timeout: 10000 });
      // A refused ChangeRoom leaves the page in its room.
      await page.locator("#new-room").fill("bad-room");
      await page.locator("#change-room").click();
      await page.locator("#log li.err").filter({ hasText: "the server refused room bad-room: invalid_room" }).waitFor({ timeout: 10000 });
      assert.equal(await page.locator("#room-current").textContent(), "live://2000");
      assert.equal(await page.evaluate(() => window.imcloudDemo.client.roomId), "live://2000");

      await page.locator('#rooms li[data-room="live://3000"] button.leave').click();
      await page.locator('#rooms li[data-room="live://3000"]').waitFor({ state: "detached", timeout: 10000 });
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=3000", stamp("after leaving 3000"));
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("still in 2000"));
      await pushWith("still in 2000").waitFor({ timeout: 10000 });
      await sleep(300); // room 3000's push, if wrongly delivered, would be here by now
      assert.equal(await pushWith("after leaving 3000").count(), 0, "a push to the room left reached the page");
    });

    await t.test("recovery: the page shows the missed pushes that came back, and says so when they could not (scripted frames)", async () => {
      const fakeURL = `ws://127.0.0.1:${await freePort()}/sub`;
      const u = "u:77";
      const r = "r:live://77";
      const scripted = new ScriptedServer([
        // First connect: nothing to recover; then a live push.
        () => [
          scriptedRecovery([
            { stream: u, epoch: "E1", offset: 10, recovered: true, replayed: 0 },
            { stream: r, epoch: "R1", offset: 5, recovered: true, replayed: 0 },
          ]),
          encodeBatch([scriptedPush({ op: 1000, offset: 11, stream: u, epoch: "E1", body: "live before the drop" })]),
        ],
        // Reconnect: three missed pushes, then op 25.
        () => [
          encodeBatch([
            scriptedPush({ op: 1000, offset: 12, stream: u, epoch: "E1", body: "missed one" }),
            scriptedPush({ op: 1000, offset: 6, stream: r, epoch: "R1", body: "missed two" }),
            scriptedPush({ op: 1001, offset: 13, stream: u, epoch: "E1", body: "missed three" }),
          ]),
          scriptedRecovery([
            { stream: u, epoch: "E1", offset: 13, recovered: true, replayed: 2 },
            { stream: r, epoch: "R1", offset: 6, recovered: true, replayed: 1 },
          ]),
        ],
        // After a reload: the user stream's history was lost.
        () => [
          scriptedRecovery([
            { stream: u, epoch: "E2", offset: 0, recovered: false, reason: "epoch_changed", replayed: 0 },
            { stream: r, epoch: "R1", offset: 6, recovered: true, replayed: 0 },
          ]),
        ],
        // Another user, a server that keeps no history: "unavailable" at once.
        (auth) => [
          scriptedRecovery([
            { stream: `u:${auth.mid}`, epoch: "", offset: 0, recovered: false, reason: "unavailable", replayed: 0 },
            { stream: `r:${auth.room_id}`, epoch: "", offset: 0, recovered: false, reason: "unavailable", replayed: 0 },
          ]),
        ],
      ]);
      const p2 = await context.newPage();
      const errors = [];
      p2.on("pageerror", (err) => errors.push(err.message));
      await p2.routeWebSocket(fakeURL, (ws) => scripted.route(ws));
      const feed = (text) => p2.locator("#pushes li.push").filter({ hasText: text });
      try {
        await p2.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=77&room=live://77`);
        await feed("live before the drop").waitFor({ timeout: 10000 });
        assert.equal(scripted.auths[0].recover, true, "the demo asks for recovery");
        assert.equal(scripted.auths[0].positions, undefined);
        assert.equal(await p2.locator("#recovery").textContent(), `on, following ${u}, ${r}`);
        assert.equal(await feed("live before the drop").getAttribute("data-replayed"), null);
        assert.match(await feed("live before the drop").locator(".stream").textContent(), /^u:77 #11$/);

        scripted.sockets[0].close({ code: 1001 });
        await p2.locator('#recovery[data-state="recovered"]').waitFor({ timeout: 10000 });
        assert.deepEqual(scripted.auths[1].positions, { [u]: { epoch: "E1", offset: 11 }, [r]: { epoch: "R1", offset: 5 } });
        assert.equal(await p2.locator("#recovery").textContent(), "recovered 3 missed pushes");
        for (const missed of ["missed one", "missed two", "missed three"]) {
          assert.equal(await feed(missed).getAttribute("data-replayed"), "true", missed);
          assert.equal(await feed(missed).locator(".replayed").textContent(), "replayed");
        }
        await shootPage(p2, "recovered-scripted");

        // A reload continues from the positions the page kept in sessionStorage.
        await p2.reload();
        await p2.locator('#recovery[data-state="incomplete"]').waitFor({ timeout: 10000 });
        assert.deepEqual(scripted.auths[2].positions, { [u]: { epoch: "E1", offset: 13 }, [r]: { epoch: "R1", offset: 6 } });
        assert.match(await p2.locator("#recovery").textContent(), /^not recovered \(u:77: epoch_changed\); 0 missed pushes replayed/);

        await p2.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=78&room=live://78`);
        await p2.locator('#recovery[data-state="incomplete"]').waitFor({ timeout: 10000 });
        assert.equal(scripted.auths[3].positions, undefined, "the positions kept were another user's");
        assert.equal(
          await p2.locator("#recovery").textContent(),
          "unavailable (u:78: unavailable; r:live://78: unavailable): pushes missed while disconnected will not come back",
        );
        assert.deepEqual(errors, [], "errors in the page");
      } finally {
        await p2.close();
      }
    });

    await t.test("rooms: the page joins and leaves rooms, lists them, names each push's room, and joins them again after a reconnect (scripted frames)", async () => {
      const fakeURL = `ws://127.0.0.1:${await freePort()}/sub`;
      const epochs = { "u:90": "U", "r:live://90": "P", "r:live://91": "R1", "r:live://92": "R2" };
      const current = (stream, offset) => ({ stream, epoch: epochs[stream], offset, recovered: true, replayed: 0 });
      // The node: a room under secret:// is forbidden; a Join of another
      // room is answered ok, with what the room got after the Join's
      // position (live://91 got one push meanwhile), its op 25, then a live
      // push.
      let missed = false;
      const onRequest = (f) => {
        if (f.op === Op.LEAVE) return [encodeFrame({ op: Op.LEAVE_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ room_id: text(f.body), ok: true }) })];
        if (f.op !== Op.JOIN) return [];
        const body = text(f.body);
        const { room_id: room, position } = body.startsWith("{") ? JSON.parse(body) : { room_id: body, position: null };
        if (room.startsWith("secret://")) {
          return [encodeFrame({ op: Op.JOIN_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ room_id: room, ok: false, error: "forbidden" }) })];
        }
        const stream = `r:${room}`;
        const replay = position && room === "live://91" ? [scriptedPush({ op: 1000, offset: position.offset + 1, stream, epoch: epochs[stream], body: "missed in 91" })] : [];
        const top = (position?.offset ?? 3) + replay.length;
        if (replay.length) missed = true;
        return [
          encodeFrame({ op: Op.JOIN_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ room_id: room, ok: true }) }),
          encodeBatch([...replay]),
          scriptedRecovery([{ ...current(stream, top), replayed: replay.length }]),
          encodeBatch([scriptedPush({ op: 1000, offset: top + 1, stream, epoch: epochs[stream], body: `live in ${room.slice(7)}${replay.length ? " again" : ""}` })]),
        ];
      };
      const scripted = new ScriptedServer(
        [
          () => [scriptedRecovery([current("u:90", 1), current("r:live://90", 1)])],
          () => [scriptedRecovery([current("u:90", 1), current("r:live://90", 1)])],
        ],
        onRequest,
      );
      const p3 = await context.newPage();
      const errors = [];
      p3.on("pageerror", (err) => errors.push(err.message));
      await p3.routeWebSocket(fakeURL, (ws) => scripted.route(ws));
      const feed = (text) => p3.locator("#pushes li.push").filter({ hasText: text });
      const room = (r) => p3.locator(`#rooms li[data-room="${r}"]`);
      const roomsShown = () => p3.$$eval("#rooms li[data-room]", (lis) => lis.map((li) => [li.dataset.room, li.dataset.state]));
      const joinWithForm = async (r) => {
        await p3.locator("#join-room").fill(r);
        await p3.locator("#join").click();
      };
      try {
        await p3.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=90&room=live://90&join=live://91`);
        // The join in the address goes out right after the auth.
        await room("live://91").and(p3.locator('[data-state="joined"]')).waitFor({ timeout: 10000 });
        assert.deepEqual(scripted.requests.filter((r) => r.op === Op.JOIN), [{ op: Op.JOIN, body: "live://91" }]);
        await feed("live in 91").waitFor({ timeout: 10000 });
        assert.equal(await feed("live in 91").locator(".in-room").textContent(), "live://91");

        // A refused room is said and not listed.
        await joinWithForm("secret://1");
        await p3.locator("#log li.err").filter({ hasText: "the server refused room secret://1: forbidden" }).waitFor({ timeout: 10000 });
        await joinWithForm("live://92");
        await room("live://92").and(p3.locator('[data-state="joined"]')).waitFor({ timeout: 10000 });
        assert.deepEqual(await roomsShown(), [["live://90", "primary"], ["live://91", "joined"], ["live://92", "joined"]]);
        await feed("live in 92").waitFor({ timeout: 10000 });
        assert.equal(await p3.locator("#recovery").textContent(), "on, following u:90, r:live://90, r:live://91, r:live://92");
        await shootPage(p3, "rooms");

        // A reconnect joins the rooms again, live://91 from its position:
        // what it got meanwhile comes back, marked replayed.
        scripted.sockets[0].close({ code: 1001 });
        await feed("missed in 91").waitFor({ timeout: 15000 });
        assert.ok(missed);
        assert.equal(await feed("missed in 91").getAttribute("data-replayed"), "true");
        assert.equal(await feed("missed in 91").locator(".in-room").textContent(), "live://91");
        assert.deepEqual(scripted.auths[1].positions, { "u:90": { epoch: "U", offset: 1 }, "r:live://90": { epoch: "P", offset: 1 } }, "the auth carries the user's and the primary room's positions");
        const rejoins = scripted.requests.filter((r) => r.op === Op.JOIN).slice(-2).map((r) => JSON.parse(r.body));
        assert.deepEqual(rejoins, [
          { room_id: "live://91", position: { epoch: "R1", offset: 4 } },
          { room_id: "live://92", position: { epoch: "R2", offset: 4 } },
        ]);
        await room("live://92").and(p3.locator('[data-state="joined"]')).waitFor({ timeout: 10000 });
        assert.deepEqual(await roomsShown(), [["live://90", "primary"], ["live://91", "joined"], ["live://92", "joined"]]);

        // Leave: the room goes from the list.
        await room("live://91").locator("button.leave").click();
        await p3.locator("#log li.ok").filter({ hasText: "left room live://91" }).waitFor({ timeout: 10000 });
        assert.equal(await p3.locator("#log li.ok").filter({ hasText: "joined room live://92 after the auth" }).count(), 1);
        assert.deepEqual(await roomsShown(), [["live://90", "primary"], ["live://92", "joined"]]);
        assert.deepEqual(scripted.requests.filter((r) => r.op === Op.LEAVE), [{ op: Op.LEAVE, body: "live://91" }]);
        assert.deepEqual(errors, [], "errors in the page");
      } finally {
        await p3.close();
      }
    });

    await t.test("token and kick: the page refreshes its token before it expires and stays down when kicked (scripted frames)", async () => {
      const fakeURL = `ws://127.0.0.1:${await freePort()}/sub`;
      // Tokens from token_url live 3 s, so the page refreshes after about 2.4 s.
      const minted = [];
      const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
      const mint = () => {
        const now = Math.floor(Date.now() / 1000);
        const token = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ mid: 95, iat: now, exp: now + 3 })}.c2ln`;
        minted.push(token);
        return token;
      };
      const onRequest = (f) =>
        f.op === Op.REFRESH ? [encodeFrame({ op: Op.REFRESH_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ ok: true, expires: Math.floor(Date.now() / 1000) + 3 }) })] : [];
      const scripted = new ScriptedServer([() => []], onRequest);
      const p4 = await context.newPage();
      const errors = [];
      p4.on("pageerror", (err) => errors.push(err.message));
      await p4.route((url) => url.pathname === "/demo-token", (route) => route.fulfill({ status: 200, contentType: "text/plain", body: mint() }));
      await p4.routeWebSocket(fakeURL, (ws) => scripted.route(ws));
      try {
        await p4.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=95&room=live://95&recover=0&token_url=/demo-token`);
        await p4.locator('#status[data-state="open"]').waitFor({ timeout: 10000 });
        assert.equal(scripted.auths[0].token, minted[0], "the auth carries the token from token_url");
        await p4.locator("#log li.ok").filter({ hasText: "token refreshed, valid until" }).waitFor({ timeout: 10000 });
        const refreshes = scripted.requests.filter((r) => r.op === Op.REFRESH);
        assert.ok(refreshes.length >= 1);
        assert.equal(refreshes[0].body, minted[1], "op 22 carries a new token from token_url");

        // A kick: the reason is shown, and the page does not reconnect.
        scripted.sockets[0].send(Buffer.from(encodeFrame({ op: Op.DISCONNECT, ver: 2, body: JSON.stringify({ reason: "banned by the test", reconnect_ms: 0 }) })));
        scripted.sockets[0].close({ code: 1001 });
        await p4.locator("#log li.err").filter({ hasText: "kicked: banned by the test" }).waitFor({ timeout: 10000 });
        await p4.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
        assert.equal(await p4.locator("#disconnect-reason").textContent(), "kicked: banned by the test");
        await shootPage(p4, "kicked-scripted");
        await sleep(1500);
        assert.equal(scripted.auths.length, 1, "no reconnect after a kick");
        assert.equal(await p4.locator("#connect").isDisabled(), false, "Connect is there to come back");
        assert.deepEqual(errors, [], "errors in the page");
      } finally {
        await p4.close();
      }
    });

    await t.test("token lifetime and kick against a server with token auth: refreshed before expiry, token_expired and a refused refresh reconnect with a new token, a kick stops the page", async () => {
      // A second server, verifying HS256 tokens: a connection lives until its
      // token's exp unless refreshed (ops 22, 23).
      const secret = "e2e-token-secret";
      const tports = { tcp: await freePort(), ws: await freePort(), http: await freePort() };
      const tserver = new Server(built.bin, tports, join(artifacts, "server-token.log"), ["-auth", "token", "-token-secret", secret]);
      await tserver.start();
      // token_url hands out tokens for mid 96 that live 3 s, or fails (500),
      // or hands out another user's, as mode says.
      let mode = "ok";
      const minted = [];
      const p5 = await context.newPage();
      const errors = [];
      p5.on("pageerror", (err) => errors.push(err.message));
      await p5.route(
        (url) => url.pathname === "/demo-token",
        (route) => {
          if (mode === "fail") return route.fulfill({ status: 500, body: "token backend down" });
          const now = Math.floor(Date.now() / 1000);
          const token = hs256(secret, { mid: mode === "other" ? 97 : 96, iat: now, exp: now + 3, rooms: ["*"] });
          minted.push({ mode, token });
          return route.fulfill({ status: 200, contentType: "text/plain", body: token });
        },
      );
      const logLines = (cls, text) => p5.locator(`#log li.${cls}`).filter({ hasText: text });
      const authed = () => logLines("ok", "authenticated as mid 96").count();
      try {
        await p5.goto(`http://127.0.0.1:${tports.http}/?mid=96&room=live://96&token_url=/demo-token`);
        await p5.locator('#status[data-state="open"]').waitFor({ timeout: 15000 });
        const openedAt = Date.now();
        // Refreshed twice: the connection outlives its first token and the next.
        await p5.waitForFunction(() => [...document.querySelectorAll("#log li.ok")].filter((li) => li.textContent.includes("token refreshed")).length >= 2, null, { timeout: 15000 });
        assert.ok(Date.now() - openedAt > 3000, "outlived the first token");
        assert.equal(await authed(), 1, "one connection all along");
        assert.equal(await p5.locator("#status").getAttribute("data-state"), "open");

        // getToken fails: the token runs out, the server closes with
        // token_expired, and the page reconnects once tokens come again.
        mode = "fail";
        await logLines("warn", "server disconnect: token_expired").waitFor({ timeout: 10000 });
        assert.ok((await logLines("err", "getToken failed").count()) >= 1);
        mode = "ok";
        await p5.waitForFunction(() => [...document.querySelectorAll("#log li.ok")].filter((li) => li.textContent.includes("authenticated as mid 96")).length === 2, null, { timeout: 15000 });

        // A refresh with another user's token is refused, the server closes
        // with op 6 auth, and the page reconnects with a good token.
        mode = "other";
        await logLines("err", "token refresh refused: other_user").waitFor({ timeout: 10000 });
        mode = "ok";
        await logLines("warn", "server disconnect: auth").waitFor({ timeout: 5000 });
        await p5.waitForFunction(() => [...document.querySelectorAll("#log li.ok")].filter((li) => li.textContent.includes("authenticated as mid 96")).length === 3, null, { timeout: 15000 });
        assert.equal(await p5.locator("#status").getAttribute("data-state"), "open");
        assert.equal(await logLines("err", "kicked").count(), 0);
        assert.equal(await logLines("err", "refused its auth").count(), 0, "no AuthError");
        assert.ok(minted.some((m) => m.mode === "other"));

        // A kick through the HTTP API: the page says why and stays down.
        const kicked = JSON.parse(await pushAPI(tports, "/goim/kick?mids=96&reason=banned+by+the+e2e+test", ""));
        assert.equal(kicked.data.connections, 1, JSON.stringify(kicked));
        await logLines("err", "kicked: banned by the e2e test").waitFor({ timeout: 5000 });
        await p5.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
        assert.equal(await p5.locator("#disconnect-reason").textContent(), "kicked: banned by the e2e test");
        await shootPage(p5, "token");
        await sleep(1500);
        assert.equal(await authed(), 3, "no reconnect after the kick");
        assert.deepEqual(errors, [], "errors in the page");
      } finally {
        await p5.close();
        await tserver.stop();
      }
    });

    await t.test("a server drain shows the disconnect reason, then the page reconnects", async () => {
      assert.equal(await page.locator("#disconnect-reason").textContent(), "–");
      await server.drain();
      await page.waitForFunction(() => document.querySelector("#disconnect-reason").textContent !== "–", null, { timeout: 10000 });
      const reason = await page.locator("#disconnect-reason").textContent();
      assert.ok(reason.trim().length > 0, "empty disconnect reason");
      await page.locator('#status[data-state="waiting"]').waitFor({ timeout: 5000 });
      await shoot("drained");

      await server.start(); // same ports
      await page.locator('#status[data-state="open"]').waitFor({ timeout: 45000 });
      assert.equal(await page.locator("#room-current").textContent(), "live://2000");
      // The restarted server's history (in memory) starts over: the page says
      // its streams could not be recovered, rather than "nothing missed".
      await page.locator('#recovery[data-state="incomplete"]').waitFor({ timeout: 10000 });
      assert.equal(
        await page.locator("#recovery").textContent(),
        "not recovered (u:4242: epoch_changed; r:live://2000: epoch_changed); 0 missed pushes replayed, some may be lost",
      );
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("after the restart"));
      await pushWith("after the restart").waitFor({ timeout: 10000 });
    });

    assert.deepEqual(pageErrors, [], "errors in the page");
    page.removeAllListeners("close");
  } finally {
    await shoot("browser");
    await page.setViewportSize({ width: 390, height: 844 }).catch(() => {});
    await shoot("browser-phone");
  }
});
