// Checks classwire.d.ts against classwire.js itself, which `tsc` cannot do (a hand-written .d.ts shadows
// the module it describes). With the TypeScript compiler API it reads the declarations and compares them
// with the module at run time and with its source:
//   - the .d.ts compiles on its own, without DOM or Node types;
//   - the exported values, ClasswireClient's public members (no `_` prefix), ClasswireError's own members
//     and ClasswireStats are exactly those of the module;
//   - every tunable's `@defaultValue` is the client's default, and every option the code reads is declared;
//   - the callbacks, statuses and error codes the source uses are exactly the declared ones.
// Run: node clients/js/check-declarations.mjs   (tests/clients/test_js_types.py); exit 1 lists mismatches.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import ts from "typescript";

import * as classwire from "./classwire.js";

const here = dirname(fileURLToPath(import.meta.url));
const dts = join(here, "classwire.d.ts");
const source = readFileSync(join(here, "classwire.js"), "utf8");
const problems = [];

function same(what, declared, actual) {
  const d = new Set(declared);
  const a = new Set(actual);
  const missing = [...a].filter((n) => !d.has(n)).sort();
  const extra = [...d].filter((n) => !a.has(n)).sort();
  if (missing.length) problems.push(`${what}: in classwire.js but not declared: ${missing.join(", ")}`);
  if (extra.length) problems.push(`${what}: declared but not in classwire.js: ${extra.join(", ")}`);
}

function matches(pattern) {
  return [...source.matchAll(pattern)].map((m) => m[1]);
}

// -- the declarations, compiled alone (ES2022 only: no DOM, no @types/node) -----------------------------

const program = ts.createProgram([dts], {
  strict: true,
  exactOptionalPropertyTypes: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ["lib.es2022.d.ts"],
  types: [],
});
for (const d of ts.getPreEmitDiagnostics(program)) {
  problems.push(`classwire.d.ts alone: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
}
const checker = program.getTypeChecker();
const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(dts));
const exported = new Map(checker.getExportsOfModule(moduleSymbol).map((s) => [s.name, s]));

function declared(name) {
  const symbol = exported.get(name);
  if (!symbol) throw new Error(`classwire.d.ts does not export ${name}`);
  return symbol;
}

/** The property names of an exported interface, type alias or class instance. */
function propertiesOf(name) {
  return checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(declared(name)));
}

/** The string literals of an exported union type alias. */
function literalsOf(name) {
  const type = checker.getDeclaredTypeOfSymbol(declared(name));
  return (type.isUnion() ? type.types : [type]).filter((t) => t.isStringLiteral()).map((t) => t.value);
}

// -- exports ------------------------------------------------------------------------------------------

const values = [...exported.values()].filter((s) => s.flags & ts.SymbolFlags.Value).map((s) => s.name);
same("exported values", values, Object.keys(classwire));

// -- ClasswireClient ----------------------------------------------------------------------------------

class QuietSocket {
  readyState = 0;
  send() {}
  close() {}
}
const given = { url: "ws://127.0.0.1:9/x", token: "t", classroom: "c1", WebSocket: QuietSocket };
const client = new classwire.ClasswireClient(given);
const publicNames = (names) => names.filter((n) => n !== "constructor" && !n.startsWith("_"));
same(
  "ClasswireClient members",
  propertiesOf("ClasswireClient").map((s) => s.name),
  publicNames([...Object.keys(client), ...Object.getOwnPropertyNames(classwire.ClasswireClient.prototype)]),
);
same("ClasswireStats", propertiesOf("ClasswireStats").map((s) => s.name), Object.keys(client.stats));
same("ClasswireClient.status at creation", literalsOf("ClasswireStatus"), [client.status, ...literalsOf("ClasswireStatus")]);

// Tunables: the options the client fills in itself, with their documented defaults.
const defaults = Object.fromEntries(Object.entries(client.options).filter(([k]) => !(k in given)));
const tunables = propertiesOf("ClasswireTunables");
same("ClasswireTunables (options with defaults)", tunables.map((s) => s.name), Object.keys(defaults));
for (const symbol of tunables) {
  const tag = symbol.getJsDocTags(checker).find((t) => t.name === "defaultValue");
  const text = tag ? ts.displayPartsToString(tag.text).trim() : undefined;
  let documented;
  try {
    documented = text === undefined ? undefined : JSON.parse(text);
  } catch {
    problems.push(`ClasswireTunables.${symbol.name}: @defaultValue ${text} is not JSON`);
    continue;
  }
  if (symbol.name in defaults && JSON.stringify(documented) !== JSON.stringify(defaults[symbol.name])) {
    problems.push(`ClasswireTunables.${symbol.name}: @defaultValue ${text}, the client's is ${JSON.stringify(defaults[symbol.name])}`);
  }
}

// Every option the code reads (`o.x` in the constructor, `this.options.x`) is declared.
const optionNames = new Set(propertiesOf("ClasswireClientOptions").map((s) => s.name));
for (const name of new Set([...matches(/\bo\.(\w+)/g), ...matches(/this\.options\.(\w+)/g)])) {
  if (!optionNames.has(name)) problems.push(`option ${name}: read by classwire.js but not declared`);
}
same("callbacks (_call)", propertiesOf("ClasswireCallbacks").map((s) => s.name), matches(/_call\("(\w+)"/g));

// -- statuses and error codes -------------------------------------------------------------------------

same(
  "ClasswireStatus",
  literalsOf("ClasswireStatus"),
  [...matches(/_setStatus\("(\w+)"/g), ...matches(/this\.status = "(\w+)"/g)],
);
const errorCodes = new Set(literalsOf("ClasswireErrorCode"));
for (const code of [...matches(/new ClasswireError\("(\w+)"/g), ...literalsOf("ServerErrorCode")]) {
  if (!errorCodes.has(code)) problems.push(`ClasswireErrorCode: ${code} is missing`);
}
const fallback = source.match(/frame\.code \?\? "(\w+)"/)?.[1];
if (!fallback || !errorCodes.has(fallback)) problems.push(`ClasswireErrorCode: the refusal fallback ${fallback} is missing`);
const localCodes = checker.getTypeOfSymbol(checker.getPropertyOfType(checker.getDeclaredTypeOfSymbol(declared("LocalErrorFrame")), "code"));
same(
  "LocalErrorFrame codes",
  (localCodes.isUnion() ? localCodes.types : [localCodes]).map((t) => t.value),
  matches(/_report\(\{ type: "error", code: "(\w+)"/g),
);

// -- ClasswireError -----------------------------------------------------------------------------------

const error = new classwire.ClasswireError("closed", "the client is closed");
const errorMembers = declared("ClasswireError").members;
same(
  "ClasswireError own members",
  [...errorMembers.keys()].filter((n) => n !== "__constructor"),
  Object.getOwnPropertyNames(error).filter((n) => n !== "message" && n !== "stack"),
);
if (error.name !== "ClasswireError" || error.frame !== null || error.message !== "closed: the client is closed") {
  problems.push(`ClasswireError: name ${error.name}, frame ${error.frame}, message ${error.message}`);
}

if (problems.length) {
  console.error(`classwire.d.ts does not match classwire.js:\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
console.log("classwire.d.ts matches classwire.js");
