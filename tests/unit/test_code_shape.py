"""The code's shape rules (docs/architecture.md): no class over 150 lines, every attribute a
class sets first set in its constructor (or declared on the class), and no notion of ranks in
the domain."""

from __future__ import annotations

import ast
from pathlib import Path

import training_agent

SRC = Path(training_agent.__file__).parent
MAX_CLASS_LINES = 150
CONSTRUCTORS = ("__init__", "__post_init__")


def classes() -> list[tuple[str, ast.ClassDef]]:
    return [(str(path.relative_to(SRC)), node) for path in sorted(SRC.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)]


def test_no_class_is_over_150_lines():
    long = [f"{where}: {c.name} ({c.end_lineno - c.lineno + 1} lines)"
            for where, c in classes() if (c.end_lineno or 0) - c.lineno + 1 > MAX_CLASS_LINES]
    assert long == []


def self_attributes(function: ast.AST) -> set[str]:
    return {n.attr for n in ast.walk(function)
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
            and isinstance(n.value, ast.Name) and n.value.id == "self"}


def test_every_attribute_is_first_set_in_the_constructor():
    late = []
    for where, c in classes():
        methods = [f for f in c.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
        declared = {t.target.id for t in c.body
                    if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
        declared |= {a for f in methods if f.name in CONSTRUCTORS for a in self_attributes(f)}
        late += [f"{where}: {c.name}.{a} (first set in {f.name})" for f in methods
                 if f.name not in CONSTRUCTORS for a in sorted(self_attributes(f) - declared)]
    assert late == []


def test_the_domain_knows_nothing_of_ranks():
    said = [str(p.relative_to(SRC)) for p in (SRC / "domain").rglob("*.py")
            if any(w in p.read_text() for w in ("rank 0", "torchrun", "world_size", "local_rank", "follower"))]
    assert said == []
