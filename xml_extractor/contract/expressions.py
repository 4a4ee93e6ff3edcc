"""A small, safe expression language for calculated columns.

Parsed once when the contract is compiled into a tree of Python closures; evaluating it per
document is a few function calls, with no ``eval`` and no re-parsing. SQL-like semantics:
NULL propagates through arithmetic and comparisons, AND/OR use three-valued logic.

Grammar (case-insensitive keywords)::

    expr     := or
    or       := and (OR and)*
    and      := not (AND not)*
    not      := NOT not | cmp
    cmp      := add [ (= | <> | != | < | <= | > | >=) add
                     | IS [NOT] NULL | [NOT] LIKE add | [NOT] IN (expr, ...)
                     | [NOT] BETWEEN add AND add ]
    add      := mul ((+ | - | ||) mul)*
    mul      := unary ((* | / | %) unary)*
    unary    := - unary | primary
    primary  := number | 'string' | NULL | TRUE | FALSE | DATE 'YYYY-MM-DD'
              | DATE ( expr )   -- the day of a date-time (comparable with DATE literals)
              | name            -- a column computed earlier in the same row
              | @attribute      -- the raw attribute of the current element (trimmed, '' -> NULL)
              | func(expr, ...) | CASE ... END | ( expr )

Functions: COALESCE, NULLIF, UPPER, LOWER, TRIM, LENGTH, ABS, ROUND, INT, DECIMAL, DIGITS,
SUBSTR(text, start[, length]) (1-based, as in SQL), DATE(datetime) (the day of a date-time),
ADD_DAYS(date, n).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from ..errors import ContractError

Evaluator = Callable[[dict, Callable[[str], Any]], Any]
"""Compiled expression: ``fn(row_values, raw_attribute_getter) -> value``."""

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>\d+\.\d*|\.\d+|\d+)
      | (?P<str>'(?:[^']|'')*')
      | (?P<attr>@[A-Za-z_][A-Za-z0-9_.\-]*)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|!=|<=|>=|\|\||[-+*/%=<>(),])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "LIKE",
    "IN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "TRUE",
    "FALSE",
    "DATE",
    "BETWEEN",
}


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ContractError(f"unexpected character {text[pos : pos + 10]!r} at offset {pos}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "name" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        tokens.append(Token(kind, value, m.start(m.lastgroup or 0)))
        pos = m.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


def _num(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, Decimal)):
        return v
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def _arith(op: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        a, b = _num(a), _num(b)
        if a is None or b is None:
            return None
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            return None  # division by zero is NULL, never an exception
        if op == "/":
            return Decimal(a) / Decimal(b)
        return a % b

    return apply


def _same_kind(v: Any) -> Any:
    """A date compared with a date-time is that day's midnight, as SQL compares them."""
    return v if isinstance(v, _dt.datetime) else _dt.datetime(v.year, v.month, v.day)


def _compare(op: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        if isinstance(a, _dt.date) and isinstance(b, _dt.date):
            a, b = _same_kind(a), _same_kind(b)
        elif isinstance(a, str) != isinstance(b, str):
            na, nb = _num(a), _num(b)
            if na is None or nb is None:
                a, b = str(a), str(b)
            else:
                a, b = na, nb
        try:
            if op == "=":
                return a == b
            if op in ("<>", "!="):
                return a != b
            if op == "<":
                return a < b
            if op == "<=":
                return a <= b
            if op == ">":
                return a > b
            return a >= b
        except TypeError:
            return None

    return apply


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL | re.IGNORECASE)


def _to_int(v: Any) -> Any:
    n = _num(v)
    if n is None:
        return None
    if isinstance(n, Decimal):
        if n != n.to_integral_value():
            return None
        return int(n)
    return n


def _substr(v: Any, start: Any, length: Any = None) -> Any:
    """SQL SUBSTR: 1-based start; NULL in, NULL out."""
    if v is None or start is None:
        return None
    s, i = str(v), _to_int(start)
    if i is None:
        return None
    i = max(int(i), 1) - 1
    if length is None:
        return s[i:]
    n = _to_int(length)
    return None if n is None else s[i : i + max(int(n), 0)]


def _day_of(v: Any) -> Any:
    """DATE(x): the day of a date-time; a date stays a date; anything else is NULL."""
    if isinstance(v, _dt.datetime):
        return v.date()
    if isinstance(v, _dt.date):
        return v
    return None


def _add_days(v: Any, days: Any) -> Any:
    """ADD_DAYS(date or date-time, n): n days later (earlier when negative); NULL in, NULL out;
    a result outside the calendar is NULL."""
    n = _to_int(days)
    if n is None or not isinstance(v, _dt.date):
        return None
    try:
        return v + _dt.timedelta(days=int(n))
    except OverflowError:
        return None


def _round(v: Any, places: Any = 0) -> Any:
    n = _num(v)
    if n is None:
        return None
    return Decimal(n).quantize(Decimal(1).scaleb(-int(places or 0)), rounding=ROUND_HALF_UP)


_FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    # name: (min args, max args, implementation receiving evaluated args)
    "COALESCE": (1, 99, lambda *a: next((x for x in a if x is not None), None)),
    "NULLIF": (2, 2, lambda a, b: None if a == b else a),
    "UPPER": (1, 1, lambda a: None if a is None else str(a).upper()),
    "LOWER": (1, 1, lambda a: None if a is None else str(a).lower()),
    "TRIM": (1, 1, lambda a: None if a is None else (str(a).strip() or None)),
    "LENGTH": (1, 1, lambda a: None if a is None else len(str(a))),
    "ABS": (1, 1, lambda a: None if _num(a) is None else abs(_num(a))),
    "ROUND": (1, 2, _round),
    "INT": (1, 1, _to_int),
    "DECIMAL": (1, 1, _num),
    "DIGITS": (
        1,
        1,
        lambda a: None if a is None else ("".join(c for c in str(a) if c.isdigit()) or None),
    ),
    "SUBSTR": (2, 3, _substr),
    "ADD_DAYS": (2, 2, _add_days),
}


def _truth(v: Any) -> Any:
    return None if v is None else bool(v)


class _Parser:
    def __init__(self, text: str, columns: set[str], where: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.columns = columns
        self.where = where
        self.column_refs: set[str] = set()
        self.attribute_refs: set[str] = set()

    # -- token helpers ----------------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, value: str | None = None) -> Token | None:
        tok = self.peek()
        if tok.kind == kind and (value is None or tok.value == value):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, value: str | None = None) -> Token:
        tok = self.accept(kind, value)
        if tok is None:
            got = self.peek()
            want = value or kind
            raise self.error(
                f"expected {want!r} but found {got.value or 'end of expression'!r}", got
            )
        return tok

    def error(self, message: str, tok: Token | None = None) -> ContractError:
        pos = (tok or self.peek()).pos
        return ContractError(f"{self.where}: {message} at offset {pos} in {self.text!r}")

    # -- grammar ----------------------------------------------------------------------------
    def parse(self) -> Evaluator:
        node = self.parse_or()
        if self.peek().kind != "eof":
            raise self.error(f"unexpected {self.peek().value!r}")
        return node

    def parse_or(self) -> Evaluator:
        left = self.parse_and()
        while self.accept("kw", "OR"):
            right = self.parse_and()
            left = (lambda lf, rf: lambda row, attr: _or(lf(row, attr), rf(row, attr)))(left, right)
        return left

    def parse_and(self) -> Evaluator:
        left = self.parse_not()
        while self.accept("kw", "AND"):
            right = self.parse_not()
            left = (lambda lf, rf: lambda row, attr: _and(lf(row, attr), rf(row, attr)))(
                left, right
            )
        return left

    def parse_not(self) -> Evaluator:
        if self.accept("kw", "NOT"):
            inner = self.parse_not()
            return lambda row, attr: (lambda v: None if v is None else not v)(
                _truth(inner(row, attr))
            )
        return self.parse_cmp()

    def parse_cmp(self) -> Evaluator:
        left = self.parse_add()
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.parse_add()
            fn = _compare(tok.value)
            return lambda row, attr: fn(left(row, attr), right(row, attr))
        if self.accept("kw", "IS"):
            negate = bool(self.accept("kw", "NOT"))
            self.expect("kw", "NULL")
            if negate:
                return lambda row, attr: left(row, attr) is not None
            return lambda row, attr: left(row, attr) is None
        negate = bool(self.accept("kw", "NOT"))
        if self.accept("kw", "LIKE"):
            pat_tok = self.expect("str")
            rx = _like_regex(pat_tok.value[1:-1].replace("''", "'"))

            def like(row: dict, attr: Callable[[str], Any]) -> Any:
                v = left(row, attr)
                if v is None:
                    return None
                hit = rx.fullmatch(str(v)) is not None
                return not hit if negate else hit

            return like
        if self.accept("kw", "IN"):
            self.expect("op", "(")
            items = [self.parse_or()]
            while self.accept("op", ","):
                items.append(self.parse_or())
            self.expect("op", ")")
            eq = _compare("=")

            def in_list(row: dict, attr: Callable[[str], Any]) -> Any:
                v = left(row, attr)
                if v is None:
                    return None
                hit = any(eq(v, it(row, attr)) for it in items)
                return not hit if negate else hit

            return in_list
        if self.accept("kw", "BETWEEN"):
            lo = self.parse_add()
            self.expect("kw", "AND")
            hi = self.parse_add()
            ge, le = _compare(">="), _compare("<=")

            def between(row: dict, attr: Callable[[str], Any]) -> Any:
                v = left(row, attr)
                r = _and(ge(v, lo(row, attr)), le(v, hi(row, attr)))
                return (None if r is None else not r) if negate else r

            return between
        if negate:
            raise self.error("NOT must be followed by LIKE, IN or BETWEEN here")
        return left

    def parse_add(self) -> Evaluator:
        left = self.parse_mul()
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value in ("+", "-", "||"):
                self.take()
                right = self.parse_mul()
                if tok.value == "||":
                    left = (lambda lf, rf: lambda row, attr: _concat(lf(row, attr), rf(row, attr)))(
                        left, right
                    )
                else:
                    fn = _arith(tok.value)
                    left = (lambda lf, rf, f: lambda row, attr: f(lf(row, attr), rf(row, attr)))(
                        left, right, fn
                    )
            else:
                return left

    def parse_mul(self) -> Evaluator:
        left = self.parse_unary()
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value in ("*", "/", "%"):
                self.take()
                right = self.parse_unary()
                fn = _arith(tok.value)
                left = (lambda lf, rf, f: lambda row, attr: f(lf(row, attr), rf(row, attr)))(
                    left, right, fn
                )
            else:
                return left

    def parse_unary(self) -> Evaluator:
        if self.accept("op", "-"):
            inner = self.parse_unary()
            neg = _arith("-")
            return lambda row, attr: neg(0, inner(row, attr))
        return self.parse_primary()

    def parse_primary(self) -> Evaluator:
        tok = self.take()
        if tok.kind == "num":
            value: Any = Decimal(tok.value) if "." in tok.value else int(tok.value)
            return lambda row, attr: value
        if tok.kind == "str":
            s = tok.value[1:-1].replace("''", "'")
            return lambda row, attr: s
        if tok.kind == "attr":
            name = tok.value[1:]
            self.attribute_refs.add(name)
            return lambda row, attr: attr(name)
        if tok.kind == "kw":
            if tok.value == "NULL":
                return lambda row, attr: None
            if tok.value in ("TRUE", "FALSE"):
                b = tok.value == "TRUE"
                return lambda row, attr: b
            if tok.value == "DATE":
                if self.peek().kind == "op" and self.peek().value == "(":
                    self.take()
                    arg = self.parse_or()
                    self.expect("op", ")")
                    return lambda row, attr: _day_of(arg(row, attr))
                lit = self.expect("str")
                try:
                    d = _dt.date.fromisoformat(lit.value[1:-1])
                except ValueError:
                    raise self.error(f"bad date literal {lit.value}", lit) from None
                return lambda row, attr: d
            if tok.value == "CASE":
                return self.parse_case()
            raise self.error(f"unexpected keyword {tok.value}", tok)
        if tok.kind == "name":
            if self.peek().kind == "op" and self.peek().value == "(":
                return self.parse_call(tok)
            if tok.value not in self.columns:
                raise self.error(
                    f"unknown column {tok.value!r} (an expression may use columns defined before it: "
                    f"{', '.join(sorted(self.columns)) or 'none'}; use @name for a raw attribute)",
                    tok,
                )
            self.column_refs.add(tok.value)
            col = tok.value
            return lambda row, attr: row.get(col)
        if tok.kind == "op" and tok.value == "(":
            inner = self.parse_or()
            self.expect("op", ")")
            return inner
        raise self.error(f"unexpected {tok.value or 'end of expression'!r}", tok)

    def parse_call(self, name_tok: Token) -> Evaluator:
        fname = name_tok.value.upper()
        if fname not in _FUNCTIONS:
            raise self.error(
                f"unknown function {name_tok.value}() (known: {', '.join(sorted(_FUNCTIONS))})",
                name_tok,
            )
        lo, hi, impl = _FUNCTIONS[fname]
        self.expect("op", "(")
        args: list[Evaluator] = []
        if not self.accept("op", ")"):
            args.append(self.parse_or())
            while self.accept("op", ","):
                args.append(self.parse_or())
            self.expect("op", ")")
        if not lo <= len(args) <= hi:
            raise self.error(f"{fname}() takes {lo}..{hi} arguments, got {len(args)}", name_tok)
        if fname == "COALESCE":  # lazy: stop at the first non-NULL

            def coalesce(row: dict, attr: Callable[[str], Any]) -> Any:
                for a in args:
                    v = a(row, attr)
                    if v is not None:
                        return v
                return None

            return coalesce
        return lambda row, attr: impl(*(a(row, attr) for a in args))

    def parse_case(self) -> Evaluator:
        subject: Evaluator | None = None
        if not (self.peek().kind == "kw" and self.peek().value == "WHEN"):
            subject = self.parse_or()
        branches: list[tuple[Evaluator, Evaluator]] = []
        while self.accept("kw", "WHEN"):
            cond = self.parse_or()
            self.expect("kw", "THEN")
            branches.append((cond, self.parse_or()))
        if not branches:
            raise self.error("CASE needs at least one WHEN")
        otherwise: Evaluator = lambda row, attr: None  # noqa: E731
        if self.accept("kw", "ELSE"):
            otherwise = self.parse_or()
        self.expect("kw", "END")
        eq = _compare("=")
        if subject is None:

            def searched(row: dict, attr: Callable[[str], Any]) -> Any:
                for cond, res in branches:
                    if cond(row, attr):
                        return res(row, attr)
                return otherwise(row, attr)

            return searched
        subj = subject

        def simple(row: dict, attr: Callable[[str], Any]) -> Any:
            v = subj(row, attr)
            for cond, res in branches:
                if eq(v, cond(row, attr)):
                    return res(row, attr)
            return otherwise(row, attr)

        return simple


def _and(a: Any, b: Any) -> Any:
    a, b = _truth(a), _truth(b)
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: Any, b: Any) -> Any:
    a, b = _truth(a), _truth(b)
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _concat(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    return f"{a}{b}"


@dataclass
class CompiledExpression:
    source: str
    evaluate: Evaluator
    column_refs: frozenset[str]
    attribute_refs: frozenset[str]


def compile_expression(
    text: str, known_columns: set[str], where: str = "expression"
) -> CompiledExpression:
    """Parse ``text`` once; refuse unknown columns/functions with a message naming ``where``."""
    if not isinstance(text, str) or not text.strip():
        raise ContractError(f"{where}: empty expression")
    p = _Parser(text, set(known_columns), where)
    fn = p.parse()
    return CompiledExpression(text, fn, frozenset(p.column_refs), frozenset(p.attribute_refs))
