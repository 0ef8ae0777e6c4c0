"""``rubyctl rules import-ha FILE... [-o OUT]``: Home Assistant automations, natively written.

Reads files in Home Assistant's automation format (what the engine also loads as they are),
writes every automation that loads as a rule in Ruby Core's own format, and lists the others'
errors with their lines. Reads files only; no NATS.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ruby_ctl import args as cli_args
from ruby_rules import LoadError, Rule, load_file
from ruby_rules.ha.native import native_yaml
from ruby_rules.ha.report import survey


def add(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``import-ha`` among the ``rules`` verbs."""
    parser = cli_args.add_verb(
        verbs,
        "import-ha",
        "write Home Assistant automations in Ruby Core's own rule format",
        "Read automations in Home Assistant's format (automations.yaml: a list; a package "
        "with automation: keys; either spelling, trigger/platform and action/service) and "
        "write every one that loads as a rule in Ruby Core's own format, to OUT or standard "
        "output. The engine loads Home Assistant's format as it is: this is for those who "
        "prefer the native one.\n\n"
        "Every automation that does not load is listed on standard error as "
        "file:line:column: message; a feature Ruby Core does not support yet is named "
        "(device trigger is not supported yet). An automation without id gets one derived from "
        "its alias, and a note says so. The last line counts what loaded and what the rest "
        "need. Exit 0 if every automation was written, 1 if any was refused, 2 if a FILE "
        "does not exist.",
        "  rubyctl rules import-ha automations.yaml -o rules/from_ha.yaml\n"
        "  rubyctl rules import-ha packages/*.yaml",
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="Home Assistant automation files"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT",
        help="write the rules to this file (default: standard output)",
    )
    parser.set_defaults(handler=import_ha)


def import_ha(args: argparse.Namespace) -> int:
    """Run ``rubyctl rules import-ha``."""
    files: list[Path] = args.files
    for path in files:
        if not os.path.lexists(path):
            print(f"rubyctl rules import-ha: {path}: no such file", file=sys.stderr)
            return 2
    found = survey(files)
    rules: dict[str, Rule] = {}
    errors: list[LoadError | str] = []
    for path in files:
        if not any(a.file == str(path) for a in found.automations):
            errors.append(f"{path}: no Home Assistant automations here (a list, or automation:)")
        result = load_file(path)
        errors.extend(result.errors)
        for rule in result.rules:
            first = rules.setdefault(rule.id, rule)
            if first is not rule:
                message = f"duplicate rule id {rule.id!r}: already defined at {first.where}"
                errors.append(LoadError(rule.file, rule.line, rule.column, message, rule.id))
    for error in errors:
        print(error, file=sys.stderr)
    for automation in found.automations:
        if automation.derived and automation.loaded:
            print(
                f"note: {automation.file}:{automation.line}: id {automation.rule_id!r} "
                f"derived {automation.derived}",
                file=sys.stderr,
            )
    text = "# Written by rubyctl rules import-ha from Home Assistant automations.\n"
    text += native_yaml(rules.values())
    if args.output is None:
        sys.stdout.write(text)
        where = "standard output"
    else:
        args.output.write_text(text, encoding="utf-8")
        where = str(args.output)
    count = f"{len(rules)} rule{'' if len(rules) == 1 else 's'}"
    print(
        f"rubyctl rules import-ha: {found.summary()}; {count} written to {where}", file=sys.stderr
    )
    return 1 if errors else 0
