// Parses an AsyncAPI document with the AsyncAPI parser and prints, as JSON, its diagnostics
// (severity 0 = error), its operations, and every `pattern` in it that ECMAScript cannot
// compile (with the `u` flag, as JSON Schema validators such as ajv do).
// Usage: node check.mjs document.json
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const text = readFileSync(process.argv[2], "utf8");
const { document, diagnostics } = await new Parser().parse(text);
const found = diagnostics.map(({ code, message, path, severity }) => ({ code, message, path, severity }));
const operations = document ? document.operations().all().map((operation) => operation.id()) : [];

const patterns = new Set();
(function collect(node) {
  if (Array.isArray(node)) node.forEach(collect);
  else if (node && typeof node === "object") {
    if (typeof node.pattern === "string") patterns.add(node.pattern);
    Object.values(node).forEach(collect);
  }
})(JSON.parse(text));
const broken = [...patterns].filter((pattern) => {
  try { new RegExp(pattern, "u"); return false; } catch { return true; }
});
process.stdout.write(JSON.stringify({ parsed: document !== undefined, diagnostics: found, operations,
                                      patterns: patterns.size, broken }));
