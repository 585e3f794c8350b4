"""The ``condition`` expression of a rule: a tiny, safe subset of Sigma's.

Grammar (case-insensitive keywords)::

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | quant | NAME
    quant  := ("1" | "any" | "all") "of" (PATTERN | "them")

``NAME`` is a selection name; ``PATTERN`` may end in ``*`` (``1 of sel*``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

Evaluator = Callable[[dict[str, bool]], bool]

_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9_*.\-]+)")


class ConditionError(ValueError):
    pass


def _tokenize(text: str) -> list[str]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ConditionError(f"unexpected character {text[pos]!r} at position {pos}")
        out.append(m.group(1))
        pos = m.end()
    return out


def compile_condition(text: str, names: list[str]) -> tuple[Evaluator, set[str]]:
    """Compile ``text`` over the selection ``names``; returns (evaluator, names referenced)."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("condition must be a non-empty string")
    tokens = _tokenize(text)
    pos = 0
    used: set[str] = set()

    def peek() -> str | None:
        return tokens[pos].lower() if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ConditionError("condition ends unexpectedly")
        tok = tokens[pos]
        pos += 1
        return tok

    def expr() -> Evaluator:
        parts = [term()]
        while peek() == "or":
            take()
            parts.append(term())
        if len(parts) == 1:
            return parts[0]
        alternatives = tuple(parts)

        def either(s: dict[str, bool]) -> bool:
            return any(f(s) for f in alternatives)

        return either

    def term() -> Evaluator:
        parts = [factor()]
        while peek() == "and":
            take()
            parts.append(factor())
        if len(parts) == 1:
            return parts[0]
        required = tuple(parts)

        def both(s: dict[str, bool]) -> bool:
            return all(f(s) for f in required)

        return both

    def factor() -> Evaluator:
        tok = peek()
        if tok is None:
            raise ConditionError("condition ends unexpectedly")
        if tok == "not":
            take()
            inner = factor()
            return lambda s: not inner(s)
        if tok == "(":
            take()
            inner = expr()
            if peek() != ")":
                raise ConditionError("missing ')'")
            take()
            return inner
        if tok in ("1", "any", "all") and pos + 1 < len(tokens) and tokens[pos + 1].lower() == "of":
            quant = take().lower()
            take()
            pattern = take()
            if pattern.lower() == "them":
                group = list(names)
            else:
                group = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not group:
                raise ConditionError(f"{pattern!r} matches no selection")
            used.update(group)
            g = tuple(group)
            if quant == "all":
                return lambda s: all(s[n] for n in g)
            return lambda s: any(s[n] for n in g)
        name = take()
        if name in ("and", "or", ")"):
            raise ConditionError(f"unexpected {name!r}")
        if name not in names:
            raise ConditionError(f"unknown selection {name!r} (have: {', '.join(names) or 'none'})")
        used.add(name)
        return lambda s: s[name]

    result = expr()
    if pos != len(tokens):
        raise ConditionError(f"unexpected {tokens[pos]!r}")
    return result, used


Gate = frozenset[str] | None  # activity types a (sub)condition can match; None = any


def _and(gates: list[Gate]) -> Gate:
    known = [g for g in gates if g is not None]
    return frozenset.intersection(*known) if known else None


def _or(gates: list[Gate]) -> Gate:
    known = [g for g in gates if g is not None]
    return None if len(known) < len(gates) else frozenset().union(*known)


def condition_gate(text: str, names: list[str], gates: dict[str, Gate]) -> Gate:
    """The activity types for which an (already validated) condition can be true, so the
    engine skips rules that cannot match an event's type without evaluating them."""
    tokens = _tokenize(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos].lower() if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr() -> Gate:
        parts = [term()]
        while peek() == "or":
            take()
            parts.append(term())
        return _or(parts)

    def term() -> Gate:
        parts = [factor()]
        while peek() == "and":
            take()
            parts.append(factor())
        return _and(parts)

    def factor() -> Gate:
        tok = peek()
        if tok == "not":
            take()
            factor()
            return None
        if tok == "(":
            take()
            inner = expr()
            take()
            return inner
        if tok in ("1", "any", "all") and pos + 1 < len(tokens) and tokens[pos + 1].lower() == "of":
            quant = take().lower()
            take()
            pattern = take()
            group = (
                list(names)
                if pattern.lower() == "them"
                else [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            )
            parts = [gates.get(n) for n in group]
            return _and(parts) if quant == "all" else _or(parts)
        return gates.get(take())

    return expr()
