"""The calculated-column language: semantics and errors."""

import datetime
from decimal import Decimal

import pytest

from xml_extractor.contract.expressions import compile_expression
from xml_extractor.errors import ContractError


def ev(text, row=None, attrs=None):
    row = row or {}
    attrs = attrs or {}
    return compile_expression(text, set(row)).evaluate(row, lambda n: attrs.get(n))


@pytest.mark.parametrize(
    "text,row,expected",
    [
        ("1 + 2 * 3", {}, 7),
        ("(1 + 2) * 3", {}, 9),
        ("10 / 4", {}, Decimal("2.5")),
        ("7 % 3", {}, 1),
        ("a + 1", {"a": None}, None),
        ("a / 0", {"a": 5}, None),
        ("-a", {"a": 3}, -3),
        ("COALESCE(a, b, 9)", {"a": None, "b": None}, 9),
        ("NULLIF(a, 0)", {"a": 0}, None),
        ("CASE WHEN a > 1 THEN 'big' ELSE 'small' END", {"a": 2}, "big"),
        ("CASE a WHEN 1 THEN 'one' WHEN 2 THEN 'two' END", {"a": 2}, "two"),
        ("CASE a WHEN 1 THEN 'one' END", {"a": 3}, None),
        ("a IS NULL", {"a": None}, True),
        ("a IS NOT NULL", {"a": None}, False),
        ("a LIKE 'AB%'", {"a": "abc"}, True),
        ("a NOT LIKE '_b_'", {"a": "abc"}, False),
        ("a IN (1, 2, 3)", {"a": 2}, True),
        ("a NOT IN (1, 2)", {"a": 2}, False),
        ("a IN (1)", {"a": None}, None),
        ("a BETWEEN 1 AND 3", {"a": 3}, True),
        ("a > 1 AND b", {"a": 2, "b": None}, None),
        ("a > 1 OR b", {"a": 2, "b": None}, True),
        ("NOT a", {"a": False}, True),
        ("a = 'x' AND NOT b = 'y'", {"a": "x", "b": "z"}, True),
        ("d > DATE '2020-01-01'", {"d": datetime.date(2021, 1, 1)}, True),
        ("UPPER(TRIM(a)) || 'x'", {"a": " ab "}, "ABx"),
        ("LENGTH(a)", {"a": "abcd"}, 4),
        ("ROUND(a, 2)", {"a": Decimal("1.005")}, Decimal("1.01")),
        ("INT('12')", {}, 12),
        ("INT('1.5')", {}, None),
        ("DIGITS('(701) 555')", {}, "701555"),
        ("ABS(-2)", {}, 2),
        ("'it''s'", {}, "it's"),
    ],
)
def test_semantics(text, row, expected):
    assert ev(text, row) == expected


def test_attribute_references():
    assert ev("UPPER(@basis) = 'ANNUM'", attrs={"basis": "annum"}) is True
    assert ev("@missing IS NULL") is True


@pytest.mark.parametrize(
    "text,msg",
    [
        ("a +", "expected"),
        ("nope", "unknown column"),
        ("EVAL('x')", "unknown function"),
        ("1 2", "unexpected"),
        ("CASE END", "unexpected keyword END"),
        ("CASE 1 END", "at least one WHEN"),
        ("DATE '2020-13-01'", "bad date literal"),
        ("a ; b", "unexpected character"),
        ("COALESCE()", "takes 1..99 arguments"),
        ("__import__('os')", "unknown function"),
        ("", "empty expression"),
    ],
)
def test_errors(text, msg):
    with pytest.raises(ContractError, match=msg):
        compile_expression(text, {"a", "b"}, "columns[0]")
