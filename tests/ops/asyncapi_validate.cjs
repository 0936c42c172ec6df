// Validate AsyncAPI documents with the official parser, in one node process (loading the
// parser takes seconds). Usage: node asyncapi_validate.cjs <parser dir> <file>...
// Prints one JSON line per file: {file, valid, channels, messages, diagnostics}; a
// document is valid when it parses and no diagnostic is an error (0) or a warning (1).
const fs = require("fs");
const path = require("path");
const { Parser } = require(path.join(process.argv[2], "node_modules", "@asyncapi", "parser"));

(async () => {
  const parser = new Parser();
  for (const file of process.argv.slice(3)) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"));
    const problems = diagnostics
      .filter((d) => d.severity <= 1)
      .map((d) => ({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
    console.log(
      JSON.stringify({
        file,
        valid: document !== undefined && problems.length === 0,
        channels: document ? document.channels().length : null,
        messages: document ? document.allMessages().length : null,
        diagnostics: problems,
      }),
    );
  }
})().catch((err) => {
  console.error(err);
  process.exit(2);
});
