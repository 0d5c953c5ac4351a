// The client as a package, the way a user gets it: `npm pack` here, the
// tarball installed into a scratch project, imported from Node.js there, and
// a TypeScript program (package-usage.ts) compiled against it with
// `tsc --noEmit`. Needs typescript from this directory's devDependencies
// (npm ci); without it the test skips, or fails with IMCLOUD_REQUIRE_BACKENDS=1.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const required = process.env.IMCLOUD_REQUIRE_BACKENDS === "1";
const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")} in ${cwd}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test("package.json is publishable", () => {
  assert.equal(pkg.private, undefined, "a private package cannot be published");
  assert.match(pkg.name, /^(@[a-z0-9-]+\/)?[a-z0-9-]+$/);
  assert.match(pkg.version, /^\d+\.\d+\.\d+/);
  assert.deepEqual(pkg.exports["."], { types: "./imcloud.d.ts", default: "./imcloud.js" });
  assert.equal(pkg.dependencies, undefined, "the client has no runtime dependencies");
});

test("npm pack, install the tarball elsewhere, import it and type-check a program", { timeout: 120000 }, async (t) => {
  let tsc;
  try {
    tsc = createRequire(join(here, "package.json")).resolve("typescript/bin/tsc");
  } catch (err) {
    if (required) assert.fail(`typescript is not installed (cd examples/web && npm ci): ${err.message}`);
    t.skip(`typescript is not installed (cd examples/web && npm ci): ${err.message}`);
    return;
  }
  const tmp = mkdtempSync(join(tmpdir(), "imcloud-pkg-"));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));

  const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", tmp], here));
  assert.deepEqual(packed.files.map((f) => f.path).sort(), ["README.md", "codec.js", "imcloud.d.ts", "imcloud.js", "package.json", "reconnect.js", "recovery.js", "rooms.js", "token.js"]);

  const app = join(tmp, "app");
  run("mkdir", [app], tmp);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch-app", private: true, type: "module" }));
  run("npm", ["install", "--offline", "--no-audit", "--no-fund", join(tmp, packed.filename)], app);

  // Node.js: the package resolves by name to its module, exports only ".",
  // and says clearly when the runtime has no WebSocket.
  writeFileSync(
    join(app, "use.mjs"),
    `import * as imcloud from ${JSON.stringify(pkg.name)};
const out = { exports: Object.keys(imcloud).sort(), resolved: import.meta.resolve(${JSON.stringify(pkg.name)}) };
try {
  await import(${JSON.stringify(`${pkg.name}/imcloud.test.mjs`)});
} catch (err) {
  out.deepImport = err.code;
}
globalThis.WebSocket = undefined;
try {
  new imcloud.Client("ws://127.0.0.1:3102/sub");
} catch (err) {
  out.noWebSocket = err.name + ": " + err.message;
}
console.log(JSON.stringify(out));
`,
  );
  const out = JSON.parse(run(process.execPath, ["use.mjs"], app));
  assert.match(out.resolved, new RegExp(`/node_modules/${pkg.name}/imcloud\\.js$`));
  assert.equal(out.deepImport, "ERR_PACKAGE_PATH_NOT_EXPORTED");
  assert.match(out.noWebSocket, /^TypeError: imcloud: no WebSocket implementation/);
  const local = Object.keys(await import("./imcloud.js")).sort();
  assert.deepEqual(out.exports, local);

  // TypeScript: the program compiles against the installed declarations.
  copyFileSync(join(here, "package-usage.ts"), join(app, "package-usage.ts"));
  const tsconfig = {
    compilerOptions: { strict: true, noEmit: true, target: "es2022", module: "nodenext", moduleResolution: "nodenext", lib: ["es2022", "dom"], types: [] },
    files: ["package-usage.ts"],
  };
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify(tsconfig));
  run(process.execPath, [tsc, "-p", app], app);

  // The declarations export exactly the module's values.
  const ts = createRequire(join(here, "package.json"))("typescript");
  const program = ts.createProgram([join(app, "package-usage.ts")], { ...tsconfig.compilerOptions, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, lib: ["lib.es2022.d.ts", "lib.dom.d.ts"] });
  const dts = program.getSourceFiles().find((f) => f.fileName.endsWith(`/node_modules/${pkg.name}/imcloud.d.ts`));
  assert.ok(dts, "the program uses the installed imcloud.d.ts");
  const checker = program.getTypeChecker();
  const declared = checker
    .getExportsOfModule(checker.getSymbolAtLocation(dts))
    .filter((s) => s.flags & ts.SymbolFlags.Value)
    .map((s) => s.name)
    .sort();
  assert.deepEqual(declared, local, "values exported by imcloud.d.ts and imcloud.js");
});
