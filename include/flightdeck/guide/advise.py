"""`flightdeck advise`: recommend a serving pattern and a release strategy for a use case.

The facts come from flags, from `--from FILE.yaml` (flags win), or, when stdin is a terminal,
from questions asked for just the facts the path through the trees needs. Both trees live in
`decision_tree.yaml`; every leaf names its reasons and the next step in this repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

NONE_WORDS = {"none", "null", "-"}


def _flag(fact: str) -> str:
    return "--" + fact.replace("_", "-")


def _allowed(spec) -> str:
    if spec.kind == "number":
        return "a number ≥ 0" + (" or none" if spec.nullable else "")
    extra = " (comma-separated, or none)" if spec.kind == "list" else ""
    return ", ".join(spec.choices) + extra


def parse_value(fact: str, spec, raw: object, source: str | None = None):
    """A fact's value from a flag, a file or an answer; ConfigError naming the source and the choices."""
    from flightdeck.errors import ConfigError

    where = source or _flag(fact)
    text = raw.strip() if isinstance(raw, str) else raw
    if spec.kind == "number":
        if text is None or (isinstance(text, str) and text.lower() in NONE_WORDS):
            if spec.nullable:
                return None
            raise ConfigError(where, "a value is needed", f"give {_allowed(spec)}")
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ConfigError(where, f"{text!r} is not a number", f"give {_allowed(spec)}") from None
        if not value >= 0 or value == float("inf"):
            raise ConfigError(where, f"{text!r} is out of range", f"give {_allowed(spec)}")
        return value
    if spec.kind == "choice":
        value = str(text).lower() if text is not None else ""
        if value not in spec.choices:
            raise ConfigError(where, f"{text!r} is not allowed", f"use one of: {_allowed(spec)}")
        return value
    items = text if isinstance(text, list) else [] if text is None else str(text).split(",")
    values = [str(v).strip().lower() for v in items if str(v).strip()]
    if values in ([], ["none"]):
        return []
    bad = [v for v in values if v not in spec.choices]
    if bad:
        raise ConfigError(where, f"{', '.join(bad)} not allowed", f"use any of: {_allowed(spec)}")
    return sorted(set(values), key=spec.choices.index)


def _read_file(path: str, decision) -> dict:
    import yaml

    from flightdeck.errors import ConfigError

    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("--from", f"cannot read {path} ({exc.__class__.__name__}: {exc})",
                          "pass a YAML file of facts, e.g. latency_ms: 50") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError("--from", f"{path} holds a {type(document).__name__}, not a mapping of facts",
                          "write one `fact: value` per line")
    facts = {}
    for key, raw in document.items():
        name = str(key).replace("-", "_")
        if name not in decision.facts:
            raise ConfigError("--from", f"{path}: unknown fact {key!r}",
                              f"use the facts {', '.join(decision.facts)}")
        facts[name] = parse_value(name, decision.facts[name], raw, f"--from {path}: {name}")
    return facts


def _ask(fact: str, spec, ask_in: TextIO, ask_out: TextIO):
    from flightdeck.errors import ConfigError

    for _ in range(3):
        ask_out.write(f"{spec.question}? [{_allowed(spec)}] ")
        ask_out.flush()
        line = ask_in.readline()
        if not line:
            break
        try:
            return parse_value(fact, spec, line, f"answer for {fact}")
        except ConfigError as exc:
            ask_out.write(f"  {exc}\n")
    raise ConfigError(_flag(fact), "no usable answer", f"pass {_flag(fact)} ({_allowed(spec)})")


def advise(decision, facts: dict, *, ask_in: TextIO | None = None, ask_out: TextIO | None = None) -> dict:
    """Walk both trees. Missing facts are asked when `ask_in` is given, else a ConfigError names the flag."""
    from flightdeck.errors import ConfigError
    from flightdeck.guide.decision_tree import MissingFact, leaf_notes, walk

    facts = dict(facts)
    for name, spec in decision.facts.items():
        if name not in facts and spec.default is not None:
            facts[name] = spec.default
    outcomes = {}
    for tree in ("serving", "release"):
        while True:
            try:
                outcomes[tree] = walk(decision, tree, facts)
                break
            except MissingFact as missing:
                spec = decision.facts[missing.fact]
                if ask_in is None:
                    node = "which serving pattern" if tree == "serving" else "which release strategy"
                    raise ConfigError(_flag(missing.fact), f"needed to decide {node} ({spec.help})",
                                      f"pass {_flag(missing.fact)} with {_allowed(spec)}, or --from FILE.yaml") from None
                facts[missing.fact] = _ask(missing.fact, spec, ask_in, ask_out or sys.stderr)
        if tree == "serving":
            facts["pattern"] = outcomes["serving"].leaf.pattern
    # A serving note may hang on a fact only the release tree asked for (risk tolerance).
    outcomes = {tree: replace(o, notes=leaf_notes(decision, o.leaf, facts)) for tree, o in outcomes.items()}
    used = {step.fact for o in outcomes.values() for step in o.path} - {"pattern"}
    return {"facts": {k: v for k, v in facts.items() if k != "pattern"},
            "facts_used": sorted(used),
            "serving": _describe(outcomes["serving"], decision),
            "release": _describe(outcomes["release"], decision)}


def _describe(outcome, decision) -> dict:
    leaf, step = outcome.leaf, outcome.leaf.next_step
    kind = leaf.pattern if outcome.tree == "serving" else leaf.strategy
    return {"leaf": outcome.leaf_key,
            ("pattern" if outcome.tree == "serving" else "strategy"): kind,
            "title": decision.patterns[kind].title,
            "recommendation": leaf.recommendation,
            "reasons": list(leaf.reasons),
            "notes": outcome.notes,
            "path": [{"node": s.node, "fact": s.fact, "value": s.value, "branch": s.label} for s in outcome.path],
            "next_step": {"command": step.shell(), "dag": step.dag, "conf": step.conf, "env": dict(step.env),
                          "policy": step.policy, "why": step.why}}


def _value_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return f"{value:,.0f}"
    if isinstance(value, list):
        return ",".join(value) or "none"
    return str(value)


def format_text(result: dict) -> str:
    lines = []
    for tree, heading in (("serving", "Serving pattern"), ("release", "Release strategy")):
        r = result[tree]
        lines.append(f"{heading}: {r['recommendation']}")
        shown = [s for i, s in enumerate(r["path"]) if i == 0 or s["fact"] != r["path"][i - 1]["fact"]]
        lines.append("  path: " + " → ".join(f"{s['fact']} = {_value_text(s['value'])}" for s in shown)
                     + f" → {r['leaf']}")
        lines.append("  why:")
        lines += [f"    - {reason}" for reason in r["reasons"]]
        lines += [f"  note: {note}" for note in r["notes"]]
        step = r["next_step"]
        if step["policy"]:
            lines.append(f"  release policy needs: {json.dumps(step['policy'])}")
        if step["env"]:
            lines.append("  set on Airflow's workers: " + " ".join(f"{k}={v}" for k, v in step["env"].items()))
        lines.append(f"  next step: {step['command']}")
        lines.append(f"    ({step['why']})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _advise(args: argparse.Namespace) -> None:
    from flightdeck.guide.decision_tree import load

    decision = load()
    facts = _read_file(args.from_file, decision) if args.from_file else {}
    for name, spec in decision.facts.items():
        raw = getattr(args, name)
        if raw is not None:
            facts[name] = parse_value(name, spec, raw)
    interactive = not args.no_input and sys.stdin is not None and sys.stdin.isatty()
    result = advise(decision, facts, ask_in=sys.stdin if interactive else None, ask_out=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        sys.stdout.write(format_text(result))


def register(commands: argparse._SubParsersAction) -> None:
    """Add `advise` to the `flightdeck` sub-commands (the tree is read only when it runs)."""
    parser = commands.add_parser(
        "advise", help="recommend a serving pattern and a release strategy for a use case",
        description="Walks the decision trees of include/flightdeck/guide/decision_tree.yaml with the facts "
                    "of a use case and prints the serving pattern and release strategy, their reasons and "
                    "the next step in this repository. Missing facts are asked when stdin is a terminal.")
    # The facts are read as text and checked by the handler, so a bad value names the flag and
    # the allowed values through FlightdeckError (exit status 2).
    flags = {
        "latency_ms": "p99 a waiting caller accepts, in ms, or none when no caller waits",
        "request_rate": "average requests/s in the busy hour",
        "batch_rows": "rows per request (online) or per daily job (offline)",
        "freshness": "request, seconds, minutes, hours or day",
        "connectivity": "always, intermittent or offline",
        "label_delay": "minutes, hours, days, weeks or never",
        "risk_tolerance": "low, medium or high",
        "experiment_units_per_day": "new units a day available to an experiment",
        "infrastructure": "comma-separated: containers, kubernetes, aws_lambda, devices (or none)",
        "models": "models taking part in one answer (default 1)",
    }
    for name, text in flags.items():
        parser.add_argument(_flag(name), dest=name, metavar="VALUE", help=text)
    parser.add_argument("--from", dest="from_file", metavar="FILE.yaml",
                        help="read the facts from a YAML mapping (flags override it)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-input", action="store_true", help="never ask; a missing fact is an error")
    parser.set_defaults(func=_advise)
