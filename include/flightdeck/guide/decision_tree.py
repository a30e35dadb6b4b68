"""The decision framework's one source, `decision_tree.yaml`, loaded and checked with pydantic.

Two trees share one set of facts: `serving` (which serving pattern) and `release` (which release
strategy; it starts from the serving leaf's `pattern`). A node tests one fact and follows the
first branch whose test holds, else `otherwise`. `walk` returns the path and the leaf; a fact the
path needs and `facts` lacks raises `MissingFact`, so a caller can ask for just that one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flightdeck.errors import ConfigError, FlightdeckError

TREES = ("serving", "release")
DERIVED_FACTS = {"pattern"}  # set from the serving leaf, never asked
DAG_TRIGGER = "airflow dags trigger {dag} --conf '{conf}'"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fact(_Strict):
    short: str = Field(min_length=1)  # the diagrams' question
    kind: Literal["number", "choice", "list"]
    question: str = Field(min_length=1)
    help: str = Field(min_length=1)
    choices: list[str] = Field(default_factory=list)
    unit: str | None = None
    nullable: bool = False
    default: float | None = None

    @model_validator(mode="after")
    def _choices(self) -> Fact:
        if (self.kind == "number") == bool(self.choices):
            raise ValueError("a choice or list fact names its choices; a number fact has none")
        return self


class Test(_Strict):
    """One branch's test; exactly one of the operators is set."""

    fact: str | None = None  # only in a leaf note's `when`; a node's branch tests the node's fact
    in_: list[str] | None = Field(None, alias="in")
    lt: float | None = None
    ge: float | None = None
    is_none: bool | None = None
    contains: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_operator(self) -> Test:
        ops = [k for k in ("in_", "lt", "ge", "is_none", "contains") if getattr(self, k) is not None]
        if len(ops) != 1:
            raise ValueError(f"a test takes exactly one of in, lt, ge, is_none, contains (got {ops or 'none'})")
        return self

    def holds(self, value: object) -> bool:
        if self.is_none is not None:
            return (value is None) == self.is_none
        if self.in_ is not None:
            return value in self.in_
        if self.contains is not None:
            return isinstance(value, list | tuple) and self.contains in value
        if value is None:
            return False
        return float(value) < self.lt if self.lt is not None else float(value) >= self.ge

    def label(self, unit: str | None = None) -> str:
        suffix = f" {unit}" if unit and unit not in ("rows",) else ""
        if self.is_none is not None:
            return "none" if self.is_none else "given"
        if self.in_ is not None:
            return " / ".join(self.in_)
        if self.contains is not None:
            return f"has {self.contains}"
        bound = self.lt if self.lt is not None else self.ge
        text = f"{bound:,.0f}" if float(bound).is_integer() else f"{bound:g}"
        return f"{'<' if self.lt is not None else '≥'} {text}{suffix}"


class Branch(Test):
    then: str
    label_: str | None = Field(None, alias="label")


class Node(_Strict):
    fact: str
    ask: str | None = None  # the diagram's question when the fact's `short` does not fit this node
    branches: list[Branch] = Field(min_length=1)
    otherwise: str
    otherwise_label: str | None = None  # default: the complement of the branches' tests


class NextStep(_Strict):
    dag: str | None = None
    conf: dict | None = None
    env: dict[str, str] = Field(default_factory=dict)
    policy: dict | None = None  # release-policy entries the step needs (merged into the default file's)
    command: str | None = None
    why: str = Field(min_length=1)

    @model_validator(mode="after")
    def _dag_or_command(self) -> NextStep:
        if (self.dag is None) == (self.command is None):
            raise ValueError("a next step is either a DAG (dag + conf) or a command")
        if self.dag is not None and self.conf is None:
            raise ValueError(f"next step DAG {self.dag}: give its Params as conf")
        return self

    def shell(self) -> str:
        """The command to type: the command itself, or `airflow dags trigger` with the conf.
        `env` is for the processes that run the tasks (Airflow's workers), not for this command."""
        if self.command is not None:
            return self.command
        return DAG_TRIGGER.format(dag=self.dag, conf=json.dumps(self.conf, separators=(", ", ": ")))


class Note(_Strict):
    when: Test
    text: str = Field(min_length=1)


class Leaf(_Strict):
    pattern: str | None = None
    strategy: str | None = None
    recommendation: str = Field(min_length=1)
    reasons: list[str] = Field(min_length=1)
    next_step: NextStep
    notes: list[Note] = Field(default_factory=list)


class Tree(_Strict):
    title: str
    root: str
    nodes: dict[str, Node]
    leaves: dict[str, Leaf]


class PatternInfo(_Strict):
    title: str
    kind: Literal["serving", "release"]
    latency: str
    freshness: str
    cost: str
    risk: int = Field(ge=1, le=5)
    risk_why: str
    complexity: int = Field(ge=1, le=5)
    complexity_why: str
    rollback: str


class DecisionTree(_Strict):
    version: Literal[1]
    facts: dict[str, Fact]
    serving: Tree
    release: Tree
    patterns: dict[str, PatternInfo]

    @model_validator(mode="after")
    def _consistent(self) -> DecisionTree:
        problems: list[str] = []
        for name in TREES:
            tree: Tree = getattr(self, name)
            overlap = set(tree.nodes) & set(tree.leaves)
            if overlap:
                problems.append(f"{name}: {sorted(overlap)} are both nodes and leaves")
            targets = set(tree.nodes) | set(tree.leaves)
            if tree.root not in tree.nodes:
                problems.append(f"{name}: root {tree.root!r} is not a node")
            reached = set()
            for key, node in tree.nodes.items():
                problems += self._check_fact(f"{name}.{key}", node.fact)
                for branch in node.branches:
                    problems += self._check_test(f"{name}.{key}", node.fact, branch)
                for nxt in [b.then for b in node.branches] + [node.otherwise]:
                    if nxt not in targets:
                        problems.append(f"{name}.{key}: goes to {nxt!r}, neither a node nor a leaf")
                    reached.add(nxt)
            unreached = targets - reached - {tree.root}
            if unreached:
                problems.append(f"{name}: {sorted(unreached)} are never reached")
            for key, leaf in tree.leaves.items():
                kind = leaf.pattern if name == "serving" else leaf.strategy
                if kind is None or kind not in self.patterns:
                    problems.append(f"{name}.{key}: its {'pattern' if name == 'serving' else 'strategy'} "
                                    f"{kind!r} is not under patterns")
                for note in leaf.notes:
                    if note.when.fact is None:
                        problems.append(f"{name}.{key}: a note's `when` names its fact")
                    else:
                        problems += self._check_fact(f"{name}.{key} note", note.when.fact)
                        problems += self._check_test(f"{name}.{key} note", note.when.fact, note.when)
            problems += _cycles(name, tree)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _check_fact(self, where: str, fact: str) -> list[str]:
        if fact in self.facts or fact in DERIVED_FACTS:
            return []
        return [f"{where}: unknown fact {fact!r}"]

    def _check_test(self, where: str, fact_name: str, test: Test) -> list[str]:
        fact = self.facts.get(fact_name)
        if fact is None:
            return []
        if test.in_ is not None or test.contains is not None:
            values = test.in_ if test.in_ is not None else [test.contains]
            bad = [v for v in values if v not in fact.choices]
            return [f"{where}: {bad} are not choices of {fact_name}"] if bad else []
        if (test.lt is not None or test.ge is not None) and fact.kind != "number":
            return [f"{where}: {fact_name} is not a number"]
        if test.is_none is not None and not fact.nullable:
            return [f"{where}: {fact_name} cannot be none"]
        return []

    def tree(self, name: str) -> Tree:
        return getattr(self, name)


def _cycles(name: str, tree: Tree) -> list[str]:
    def visit(key: str, seen: tuple[str, ...]) -> list[str]:
        if key in seen:
            return [f"{name}: a cycle through {' → '.join((*seen, key))}"]
        node = tree.nodes.get(key)
        if node is None:
            return []
        out: list[str] = []
        for nxt in [b.then for b in node.branches] + [node.otherwise]:
            out += visit(nxt, (*seen, key))
        return out

    return visit(tree.root, ())


class MissingFact(FlightdeckError):
    """The path through a tree needs a fact that was not given."""

    def __init__(self, fact: str) -> None:
        self.fact = fact
        super().__init__(f"the fact {fact!r} is needed here")


@dataclass(frozen=True)
class Step:
    """One decision on the path: which node asked which fact, the value, and where it led."""

    node: str
    fact: str
    value: object
    label: str
    then: str


@dataclass(frozen=True)
class Outcome:
    tree: str
    leaf_key: str
    leaf: Leaf
    path: list[Step]
    notes: list[str]


def walk(decision: DecisionTree, name: str, facts: dict) -> Outcome:
    """Follow tree `name` with `facts`; MissingFact names the first fact the path needs and lacks."""
    tree = decision.tree(name)
    key, path = tree.root, []
    while key in tree.nodes:
        node = tree.nodes[key]
        if node.fact not in facts:
            raise MissingFact(node.fact)
        value = facts[node.fact]
        unit = decision.facts[node.fact].unit if node.fact in decision.facts else None
        chosen = next((b for b in node.branches if b.holds(value)), None)
        then = chosen.then if chosen else node.otherwise
        label = (chosen.label_ or chosen.label(unit)) if chosen else otherwise_label(decision, node)
        path.append(Step(key, node.fact, value, label, then))
        key = then
    leaf = tree.leaves[key]
    return Outcome(name, key, leaf, path, leaf_notes(decision, leaf, facts))


def leaf_notes(decision: DecisionTree, leaf: Leaf, facts: dict) -> list[str]:
    """The leaf's notes whose condition holds for `facts` (a fact not known yet holds none)."""
    notes = []
    for note in leaf.notes:
        fact = note.when.fact or ""
        value = facts.get(fact, decision.facts[fact].default if fact in decision.facts else None)
        if value is not None and note.when.holds(value):
            notes.append(note.text)
    return notes


def branch_label(decision: DecisionTree, node: Node, branch: Branch) -> str:
    fact = decision.facts.get(node.fact)
    return branch.label_ or branch.label(fact.unit if fact else None)


def otherwise_label(decision: DecisionTree, node: Node) -> str:
    """The words on the `otherwise` edge: what is left when no branch holds."""
    if node.otherwise_label:
        return node.otherwise_label
    fact = decision.facts.get(node.fact)
    unit = fact.unit if fact else None
    if len(node.branches) == 1:
        b = node.branches[0]
        if b.lt is not None:
            return Test(ge=b.lt).label(unit)
        if b.ge is not None:
            return Test(lt=b.ge).label(unit)
        if b.is_none is not None:
            return "a number" if b.is_none else "none"
        if b.contains is not None:
            return f"no {b.contains}"
    taken = {v for b in node.branches for v in (b.in_ or [])}
    if fact is not None and fact.choices and taken:
        left = [c for c in fact.choices if c not in taken]
        if left:
            return " / ".join(left)
    return "otherwise"


@lru_cache(maxsize=1)
def load() -> DecisionTree:
    """The packaged decision tree, validated (ConfigError naming each problem if it is broken)."""
    import yaml

    text = resources.files("flightdeck.guide").joinpath("decision_tree.yaml").read_text(encoding="utf-8")
    return parse(yaml.safe_load(text))


def parse(document: object) -> DecisionTree:
    try:
        return DecisionTree.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'tree'}: {e['msg']}" for e in exc.errors())
        raise ConfigError("decision_tree.yaml", problems, "correct the decision tree file") from None
