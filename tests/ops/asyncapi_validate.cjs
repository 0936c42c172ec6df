// Validate an AsyncAPI document (stdin) with the official parser; print every
// diagnostic as JSON lines and exit 1 if any is an error (severity 0) or a warning (1).
// Usage: node asyncapi_validate.cjs <dir holding node_modules/@asyncapi/parser>
const path = require("path");
const { Parser } = require(path.join(process.argv[2], "node_modules", "@asyncapi", "parser"));

let text = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (text += chunk));
process.stdin.on("end", async () => {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text);
  let bad = document === undefined;
  for (const d of diagnostics) {
    console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
    if (d.severity <= 1) bad = true;
  }
  if (document !== undefined) {
    console.log(JSON.stringify({ channels: document.channels().length, messages: document.allMessages().length }));
  }
  process.exit(bad ? 1 : 0);
});
