// Parses an AsyncAPI document with the AsyncAPI parser and prints its diagnostics as JSON
// (severity 0 = error). Usage: node check.mjs document.json
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
const found = diagnostics.map(({ code, message, path, severity }) => ({ code, message, path, severity }));
const operations = document ? document.operations().all().map((operation) => operation.id()) : [];
process.stdout.write(JSON.stringify({ parsed: document !== undefined, diagnostics: found, operations }));
