// Shared setup of the browser tests (e2e/*.test.mjs): the demo page in
// Debian's chromium, headless, driven by playwright-core, against a running
// examples/server.
//
//	cd examples/web && npm ci && npm run test:browser
//
// The server binary is $IMCLOUD_SERVER_BIN, or built here from ./examples/server.
// Without chromium, playwright-core or a buildable server a test skips and
// says why; with IMCLOUD_REQUIRE_BACKENDS=1 (CI) it fails instead.
// Screenshots of the pages and the servers' logs are left in e2e/artifacts/.
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
import { Op, decodeFrames, encodeFrame, encodePushAt, text } from "../imcloud.js";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");
/** artifacts is where the tests leave screenshots and the servers' logs. */
export const artifacts = join(here, "artifacts");
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

export function freePort() {
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
export class Server {
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

export async function pushAPI(ports, path, body) {
  const r = await fetch(`http://127.0.0.1:${ports.http}${path}`, { method: "POST", body });
  const text = await r.text();
  assert.equal(r.status, 200, `POST ${path}: ${r.status} ${text}`);
  return text;
}

export const stamp = (text) => JSON.stringify({ text, sent_ms: Date.now() });

/** inHistory waits until the history route shows a push whose body holds text in the stream query names. */
export async function inHistory(ports, query, text, timeoutMs = 10000) {
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
export class ScriptedServer {
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
export function hs256(secret, claims) {
  const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const signed = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(claims)}`;
  return `${signed}.${createHmac("sha256", secret).update(signed).digest("base64url")}`;
}

export const scriptedPush = (push) => ({ op: Op.PUSH_AT, ver: 2, body: encodePushAt(push) });
export const scriptedRecovery = (streams) => encodeFrame({ op: Op.RECOVERY, ver: 2, body: JSON.stringify({ streams }) });

/** shootPage leaves a full-page screenshot of p in e2e/artifacts/<name>.png. */
export async function shootPage(p, name) {
  await p.evaluate(() => window.scrollTo(0, 0)).catch(() => {});
  await p.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true }).catch(() => {});
}

/**
 * browserTest registers a test that runs body(t, env) against a freshly
 * started examples/server on free loopback ports, its log in
 * e2e/artifacts/<serverLog>, and a headless chromium: env is { context,
 * server, ports, bin }, context the browser's (its first page blank), bin
 * the server binary (to start more). The server and the browser are
 * stopped after the test. Without chromium, playwright-core or a server
 * the test skips, or fails under IMCLOUD_REQUIRE_BACKENDS=1.
 */
export function browserTest(name, serverLog, body) {
  test(name, { timeout: 180000 }, async (t) => {
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
    server = new Server(built.bin, ports, join(artifacts, serverLog));
    await server.start();

    context = await chromium.launchPersistentContext(join(tmp, "profile"), {
      executablePath: chromiumPath,
      headless: true,
      args: chromiumArgs,
      viewport: { width: 1100, height: 860 },
    });
    await body(t, { context, server, ports, bin: built.bin });
  });
}
