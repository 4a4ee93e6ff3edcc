"""Value converters: raw attribute text -> typed column value.

Built once per column when the contract is compiled. A converter either returns a value that
fits its column or raises :class:`BadValue` saying why; what happens then (NULL, default, fail,
truncate) is the column's ``on_invalid`` policy, applied by the mapper, which also records the
data-quality event. Nothing here ever silently truncates, rounds or zeroes a value.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
import weakref
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

Converter = Callable[[Any], Any]

# converter -> what the compiled mapper may use instead of it on trimmed non-empty attribute
# text: a specialised function giving the same value or exception for such text, or an int n
# (a string converter: text of at most n characters is its own value, unchanged)
_TEXT_PATHS: weakref.WeakKeyDictionary[Converter, Converter | int] = weakref.WeakKeyDictionary()


def text_path(convert: Converter) -> Converter | int:
    """The specialised form of ``convert`` for trimmed non-empty text (``_TEXT_PATHS``): the
    converter itself when it has none."""
    return _TEXT_PATHS.get(convert, convert)


def _with_text_path(convert: Converter, path: Converter | int) -> Converter:
    _TEXT_PATHS[convert] = path
    return convert


INT_RANGES = {
    "tinyint": (0, 255),
    "smallint": (-32768, 32767),
    "int": (-2147483648, 2147483647),
    "bigint": (-9223372036854775808, 9223372036854775807),
}
# SQL Server's datetime starts in 1753; anything earlier in these documents is noise.
MIN_YEAR, MAX_YEAR = 1753, 9999
DEFAULT_DATE_FORMATS = [
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
]
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_INT_TEXT = re.compile(r"[+-]?\d+(?:\.0*)?")
_TRUE = {"Y", "YES", "T", "TRUE", "1"}
_FALSE = {"N", "NO", "F", "FALSE", "0"}


# What a capacity loss is about: a *valid* value that the column's declared type cannot hold
# (the contract must change), as opposed to an invalid value the rules reject on purpose.
CAPACITY_LENGTH = "length"  # more characters than string(n)
CAPACITY_DIGITS = "digits"  # more integer digits than decimal(p,s) or the integer type holds
CAPACITY_SCALE = "scale"  # more decimal places than the scale
CAPACITY_TIME = "time"  # a time of day (or sub-millisecond part) the date/datetime type drops
# Not a capacity loss: a number with more significant digits than a binary float carries
# (3333.3333333333335, 0.22449999999999998: a float printed in full by the system that wrote it),
# rounded to the column's scale. Its digits beyond the 15th mean nothing.
PRECISION_NOISE = "float_noise"
FLOAT_DIGITS = 15  # decimal digits a binary double always carries (DBL_DIG)


class BadValue(Exception):
    """The value does not fit its column. ``kind`` is the data-quality event type.

    ``capacity`` is set (one of the CAPACITY_* labels) when the value is valid but the declared
    type is too small for it; None when the value itself is invalid. ``size`` is the measured
    quantity (characters, digits) for capacity problems."""

    def __init__(
        self,
        kind: str,
        reason: str,
        fixed: Any = None,
        capacity: str | None = None,
        size: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.fixed = fixed  # a usable replacement (the rounded/truncated value), if any
        self.capacity = capacity
        self.size = size


class Rounded(Exception):
    """The value fits only after rounding (decimal places beyond the scale, a time of day a date
    column cannot hold, microseconds beyond milliseconds): stored rounded, with an event. Always a
    capacity matter: the value was valid."""

    def __init__(
        self, value: Any, reason: str, capacity: str = CAPACITY_SCALE, size: int | None = None
    ) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.capacity = capacity
        self.size = size


# -- transforms: str -> str | None, applied before the type conversion ---------------------------

_SEPARATORS = str.maketrans("", "", " -()./+\t")


def _digits_only(s: str) -> str:
    """Drop separators (space - ( ) . / +); anything else that is not a digit rejects the value,
    so '00019-XYZ' or '555-5555 ext. 21' are never silently shortened into something valid."""
    d = s.translate(_SEPARATORS)
    if not d.isdigit() or not d.isascii():
        raise BadValue(
            "value_rejected", f"{s[:80]!r} has characters other than digits and separators"
        )
    return d


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "upper": str.upper,
    "lower": str.lower,
    "digits_only": _digits_only,
    "collapse_spaces": lambda s: " ".join(s.split()),
}


def _char_to_bit(s: str) -> int:
    u = s.strip().upper()
    if u in ("Y", "1"):
        return 1
    if u in ("N", "0"):
        return 0
    raise BadValue("value_rejected", f"{s!r} is not Y/N")


def _boolean_to_bit(s: str) -> int:
    u = s.strip().upper()
    if u in _TRUE:
        return 1
    if u in _FALSE:
        return 0
    raise BadValue("value_rejected", f"{s!r} is not a boolean (Y/N/true/false/1/0)")


BIT_TRANSFORMS = {"char_to_bit": _char_to_bit, "boolean_to_bit": _boolean_to_bit}


# -- type converters ------------------------------------------------------------------------------


def make_int(type_name: str) -> Converter:
    lo, hi = INT_RANGES[type_name]

    def convert(v: Any) -> int:
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, int):
            n = v
        elif isinstance(v, Decimal):
            if v != v.to_integral_value():  # a valid number with a fraction the type cannot hold
                raise BadValue(
                    "value_rejected",
                    f"{v} is not a whole number ({type_name} has no decimal places)",
                    capacity=CAPACITY_SCALE,
                    size=decimal_places(v),
                )
            n = int(v)
        else:
            s = str(v).strip()
            if not _INT_TEXT.fullmatch(s):
                if _DECIMAL_TEXT.fullmatch(s):  # 45.31 in an int column: capacity, not bad data
                    raise BadValue(
                        "value_rejected",
                        f"{s[:80]!r} is not a whole number ({type_name} has no decimal places)",
                        capacity=CAPACITY_SCALE,
                        size=decimal_places(Decimal(s)),
                    )
                raise BadValue("value_rejected", f"{s[:80]!r} is not a whole number")
            whole = s.split(".")[0]
            digits = whole.lstrip("+-").lstrip("0") or "0"
            if len(digits) > 19:  # beyond every integer type, and int() refuses > 4,300 digits
                raise BadValue(
                    "value_rejected",
                    f"{len(digits)} digits are outside the {type_name} range {lo}..{hi}",
                    capacity=CAPACITY_DIGITS,
                    size=len(digits),
                )
            n = int(whole[0] + digits if whole[0] in "+-" else digits)
        if not lo <= n <= hi:
            raise BadValue(
                "value_rejected",
                f"{n} is outside the {type_name} range {lo}..{hi}",
                capacity=CAPACITY_DIGITS,
                size=len(str(abs(n))),
            )
        return n

    def from_text(s: str) -> int:
        """ASCII digits only (at most 18: no sign, no point) in range: their int; else ``convert``."""
        if len(s) <= 18 and s.isascii() and s.isdigit():
            n = int(s)
            if lo <= n <= hi:
                return n
        return convert(s)

    return _with_text_path(convert, from_text)


def make_decimal(precision: int, scale: int) -> Converter:
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)

    def fitted(d: Decimal, v: Any) -> Decimal:
        """``d`` at the column's scale, or why it cannot be (``v``: the value as given)."""
        if not d.is_finite():
            raise BadValue("value_rejected", f"{v!r} is not a finite number")
        try:
            q = d.quantize(quantum, rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise BadValue(
                "value_rejected",
                f"{d} does not fit decimal({precision},{scale})",
                capacity=CAPACITY_DIGITS,
                size=integer_digits(d),
            ) from None
        if abs(q) >= limit:
            raise BadValue(
                "value_rejected",
                f"{d} does not fit decimal({precision},{scale})",
                capacity=CAPACITY_DIGITS,
                size=integer_digits(d),
            )
        if q != d:
            raise Rounded(
                q,
                f"{d} rounded to {q} to fit decimal({precision},{scale})",
                PRECISION_NOISE if significant_digits(d) > FLOAT_DIGITS else CAPACITY_SCALE,
                decimal_places(d),
            )
        return q

    def from_text(s: str) -> Decimal:
        """Trimmed text: checked and converted without the type dispatch of ``convert``."""
        if not _DECIMAL_TEXT.fullmatch(s):
            raise BadValue("value_rejected", f"{s[:80]!r} is not a number")
        return fitted(Decimal(s), s)

    def convert(v: Any) -> Decimal:
        if isinstance(v, Decimal):
            d = v
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            d = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
        else:
            return from_text(str(v).strip())
        return fitted(d, v)

    return _with_text_path(convert, from_text)


def integer_digits(d: Decimal) -> int:
    """Digits before the decimal point (0 for 0.5)."""
    t = d.as_tuple()
    return max(0, len(t.digits) + int(t.exponent)) if isinstance(t.exponent, int) else 0


def significant_digits(d: Decimal) -> int:
    """Significant digits: 0.22449999999999998 has 17, 45.3100 has 4."""
    if not d.is_finite() or d == 0:
        return 0
    return len(d.normalize().as_tuple().digits)


def decimal_places(d: Decimal) -> int:
    """Significant decimal places: 45.3100 has 2 (trailing zeros carry nothing)."""
    if not d.is_finite() or d == 0:
        return 0
    e = d.normalize().as_tuple().exponent
    return max(0, -int(e))


# The unit a target counts string lengths in: characters (code points: SQLite, PostgreSQL) or
# UTF-16 code units (SQL Server's NVARCHAR(n): a character beyond U+FFFF takes two).
UNIT_CHARS = "characters"
UNIT_UTF16 = "utf16"
UTF16_DIALECTS = frozenset({"mssql"})


def string_unit(dialect: str | None) -> str:
    """The string unit of a dialect's columns (characters when none is given: map, profile)."""
    return UNIT_UTF16 if dialect in UTF16_DIALECTS else UNIT_CHARS


def utf16_length(s: str) -> int:
    """UTF-16 code units: characters plus one for each beyond the Basic Multilingual Plane."""
    return len(s.encode("utf-16-le")) // 2


def cut_utf16(s: str, units: int) -> str:
    """The longest prefix of ``s`` of at most ``units`` UTF-16 units, never half a surrogate pair."""
    if len(s) * 2 <= units or s.isascii():
        return s[:units]
    b = s.encode("utf-16-le")[: 2 * units]
    if len(b) >= 2 and 0xD8 <= b[-1] <= 0xDB:  # a lone high surrogate at the end: drop it
        b = b[:-2]
    return b.decode("utf-16-le")


def make_string(length: int | None, unit: str = UNIT_CHARS) -> Converter:
    """A string of at most ``length`` in the target's unit. UTF-16 is measured only when it can
    differ from the character count (a non-ASCII value longer than half the limit)."""
    if length is None:
        return _with_text_path(lambda v: v if isinstance(v, str) else str(v), sys.maxsize)
    if unit == UNIT_UTF16:
        half = length // 2

        def convert_utf16(v: Any) -> str:
            s = v if isinstance(v, str) else str(v)
            n = len(s)
            if n > half:  # at most 2 units a character: shorter values fit whatever they hold
                size = n if s.isascii() else utf16_length(s)  # isascii: a flag of the str, O(1)
                if size > length:
                    raise BadValue(
                        "value_rejected",
                        f"{n} characters do not fit string({length})"
                        if size == n
                        else f"{size} UTF-16 units ({n} characters) do not fit string({length}) on SQL Server",
                        fixed=cut_utf16(s, length),
                        capacity=CAPACITY_LENGTH,
                        size=size,
                    )
            return s

        return _with_text_path(convert_utf16, half)

    def convert(v: Any) -> str:
        s = v if isinstance(v, str) else str(v)
        if len(s) > length:
            raise BadValue(
                "value_rejected",
                f"{len(s)} characters do not fit string({length})",
                fixed=s[:length],
                capacity=CAPACITY_LENGTH,
                size=len(s),
            )
        return s

    return _with_text_path(convert, length)


_DIRECTIVES = {
    "%Y": r"(?P<Y>\d{4})",
    "%m": r"(?P<m>\d{1,2})",
    "%d": r"(?P<d>\d{1,2})",
    "%H": r"(?P<H>\d{1,2})",
    "%I": r"(?P<I>\d{1,2})",
    "%M": r"(?P<M>\d{1,2})",
    "%S": r"(?P<S>\d{1,2})",
    "%f": r"(?P<f>\d+)",  # any number of places (SQL Server and .NET write 7): beyond 6 is cut with an event
    "%p": r"(?P<p>[AaPp][Mm])",
}


def _format_regex(fmt: str) -> re.Pattern[str] | None:
    """strptime format -> equivalent regex, compiled once (strptime costs ~15 us a call)."""
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            d = fmt[i : i + 2]
            if d not in _DIRECTIVES or _DIRECTIVES[d] in out:
                return None  # unsupported or repeated directive: strptime handles it
            out.append(_DIRECTIVES[d])
            i += 2
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return re.compile("".join(out))


def _from_match(g: dict) -> tuple[_dt.datetime, bool]:
    """The date-time of a format match, and whether it is exact (False: non-zero digits beyond the
    microsecond, which a datetime cannot hold, were cut)."""
    hour = int(g.get("H") or 0)
    if g.get("I") is not None:
        hour = int(g["I"])
        if not 1 <= hour <= 12:
            raise ValueError("hour")
        pm = (g.get("p") or "AM").upper() == "PM"
        hour = hour % 12 + (12 if pm else 0)
    frac = g.get("f")
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    exact = not (frac and frac[6:].strip("0"))
    return (
        _dt.datetime(
            int(g["Y"]),
            int(g["m"]),
            int(g["d"]),
            hour,
            int(g.get("M") or 0),
            int(g.get("S") or 0),
            micro,
        ),
        exact,
    )


def _parsers(formats: list[str]) -> list[Callable[[str], tuple[_dt.datetime, bool] | None]]:
    """One parser per format, in order: a regex where one is equivalent, else strptime."""
    parsers: list[Callable[[str], tuple[_dt.datetime, bool] | None]] = []
    for f in formats:
        rx = _format_regex(f)
        if rx is not None:

            def by_regex(s: str, rx: re.Pattern[str] = rx) -> tuple[_dt.datetime, bool] | None:
                m = rx.fullmatch(s)
                return _from_match(m.groupdict()) if m else None

            parsers.append(by_regex)
        else:

            def by_strptime(s: str, f: str = f) -> tuple[_dt.datetime, bool] | None:
                try:
                    return _dt.datetime.strptime(s, f), True
                except ValueError:
                    return None

            parsers.append(by_strptime)
    return parsers


def _one_pass(formats: list[str]) -> Callable[[str], tuple[_dt.datetime, bool] | None] | None:
    """Every format in one alternation (tried in order, as the parsers are): the date-time of the
    first format the text matches, or None when it matches none. Raises ValueError when that
    first match is no real date (a later format may still read it: the caller asks the
    parsers). None when a format has no regex form."""
    rxs = [_format_regex(f) for f in formats]
    if not rxs or any(rx is None for rx in rxs):
        return None
    parts: list[str] = []
    shapes: dict[int, tuple[int, list[str]]] = {}  # outer group -> (it, its directives in order)
    outer = 1
    for rx in rxs:
        assert rx is not None
        names = sorted(rx.groupindex, key=rx.groupindex.__getitem__)
        shapes[outer] = (outer, names)
        outer += 1 + len(names)
        parts.append("(" + re.sub(r"\(\?P<(\w)>", "(", rx.pattern) + ")")
    combined = re.compile("|".join(parts))
    readers = {outer: _reader(outer, names) for outer, (_, names) in shapes.items()}

    def one_pass(s: str) -> tuple[_dt.datetime, bool] | None:
        m = combined.fullmatch(s)
        if m is None:
            return None
        return readers[m.lastindex](m.groups())  # type: ignore[index]

    return one_pass


def _reader(outer: int, names: list[str]) -> Callable[[tuple], tuple[_dt.datetime, bool]]:
    """What ``_from_match`` makes of one format's groups, read from ``m.groups()`` (the format's
    directives follow its outer group ``outer``): the common shapes -- a date, a date and time, a
    date and time with a fraction -- without the dict of groups; any other through it."""
    at = {n: outer + k for k, n in enumerate(names)}
    y, mo, d = at.get("Y"), at.get("m"), at.get("d")
    h, mi, se, f = at.get("H"), at.get("M"), at.get("S"), at.get("f")
    dt = _dt.datetime
    if y is None or mo is None or d is None or not set(at) <= {"Y", "m", "d", "H", "M", "S", "f"}:
        return lambda g: _from_match({n: g[outer + k] for k, n in enumerate(names)})
    if len(at) == 3:
        return lambda g: (dt(int(g[y]), int(g[mo]), int(g[d])), True)
    if h is None or mi is None or se is None:
        return lambda g: _from_match({n: g[outer + k] for k, n in enumerate(names)})
    if f is None:
        return lambda g: (
            dt(int(g[y]), int(g[mo]), int(g[d]), int(g[h]), int(g[mi]), int(g[se])),
            True,
        )

    def with_fraction(g: tuple) -> tuple[_dt.datetime, bool]:
        frac = g[f]
        return (
            dt(
                int(g[y]),
                int(g[mo]),
                int(g[d]),
                int(g[h]),
                int(g[mi]),
                int(g[se]),
                int(frac[:6].ljust(6, "0")),
            ),
            not frac[6:].strip("0"),
        )

    return with_fraction


def make_datetime(formats: list[str], date_only: bool) -> Converter:
    parsers = _parsers(formats)
    one_pass = _one_pass(formats)

    def parse_text(s: str) -> tuple[_dt.datetime, bool]:
        for parse in parsers:
            try:
                found = parse(s)
            except ValueError:  # matched the shape but not a real date (month 13, Feb 30)
                found = None
            if found is not None:
                return found
        raise BadValue("value_rejected", f"{s[:80]!r} is not a date in any declared format")

    def fitted(d: _dt.datetime, exact: bool, v: Any) -> Any:
        """``d`` as the column holds it (``exact``: no digits were cut while parsing ``v``)."""
        if not MIN_YEAR <= d.year <= MAX_YEAR:
            raise BadValue("value_rejected", f"year {d.year} is outside {MIN_YEAR}..{MAX_YEAR}")
        if date_only:
            if d.hour or d.minute or d.second or d.microsecond or not exact:
                time = d.time().isoformat() if exact else f"of {str(v).strip()[:60]!r}"
                raise Rounded(
                    d.date(), f"time of day {time} dropped: the column is a date", CAPACITY_TIME
                )
            return d.date()
        # datetime columns keep milliseconds (SQL Server datetime2(3), PostgreSQL timestamp(3))
        if d.microsecond % 1000 or not exact:
            kept = d.replace(microsecond=(d.microsecond // 1000) * 1000)
            raise Rounded(
                kept,
                f"{d.isoformat(sep=' ') if exact else str(v).strip()[:60]} cut to milliseconds ({kept.isoformat(sep=' ', timespec='milliseconds')})",
                CAPACITY_TIME,
            )
        return d

    def convert(v: Any) -> Any:
        if isinstance(v, _dt.datetime):
            return fitted(v, True, v)
        if isinstance(v, _dt.date):
            return fitted(_dt.datetime(v.year, v.month, v.day), True, v)
        return fitted(*parse_text(str(v).strip()), v)

    def from_text(s: str) -> Any:
        """Trimmed text: all formats in one regex pass (``_one_pass``), the parsers when its first
        match is no real date."""
        assert one_pass is not None
        try:
            found = one_pass(s)
        except ValueError:
            found = parse_text(s)
        if found is None:
            raise BadValue("value_rejected", f"{s[:80]!r} is not a date in any declared format")
        return fitted(*found, s)

    return convert if one_pass is None else _with_text_path(convert, from_text)


def make_bit(transform: str | None) -> Converter:
    fn = BIT_TRANSFORMS.get(transform or "boolean_to_bit", _boolean_to_bit)

    def convert(v: Any) -> int:
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int) and v in (0, 1):
            return v
        return fn(str(v))

    return _with_text_path(convert, fn)


def make_enum(name: str, codes: dict[str, int]) -> Converter:
    """Code -> stable id, case-insensitive and trimmed."""
    table = {k.strip().upper(): v for k, v in codes.items()}

    def convert(v: Any) -> int:
        key = str(v).strip().upper()
        try:
            return table[key]
        except KeyError:
            raise BadValue("unknown_enum", f"{str(v)[:80]!r} is not a known {name} code") from None

    def from_text(s: str) -> int:
        """Trimmed text: its code looked up directly; ``convert`` says why when it is unknown."""
        found = table.get(s.upper())
        return convert(s) if found is None else found

    return _with_text_path(convert, from_text)


def make_pattern(pattern: str) -> Callable[[str], None]:
    rx = re.compile(pattern)

    def check(s: str) -> None:
        if not rx.fullmatch(s):
            raise BadValue("value_rejected", f"{s[:80]!r} does not match {pattern}")

    return check


def parse_default(type_name: str, value: Any, converter: Converter) -> Any:
    """Defaults are declared as JSON; they pass through the same converter as data."""
    if value is None:
        return None
    try:
        return converter(value)
    except Rounded as r:
        return r.value
