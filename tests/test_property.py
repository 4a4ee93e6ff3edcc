"""Random mutations of a valid document only ever yield rows or a typed failure."""

import pytest
from conftest import SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xml_extractor.errors import DocumentFailure
from xml_extractor.mapping import map_document

# hundreds of hypothesis examples through the whole mapping (about a second)
pytestmark = pytest.mark.slow

BASE = (SAMPLES / "app-1001.xml").read_text("utf-8-sig")
CUT = BASE.index("<Reports>")
BASE = BASE[:CUT] + "<Reports/></Request></Provenir>"

values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "99999999999999999999",
            "1e999",
            "NaN",
            "13/45/2020",
            "2020-02-30",
            "&amp;",
            "(555) 555-5555 ext. 21",
            "\u00e9\u00e8",
            "'",
            "CURR",
            "PR",
            "AUTHU",
            "PREV",
        ]
    ),
)


@st.composite
def mutated(draw):
    text = BASE
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        if op == 0:  # replace an attribute value
            parts = text.split('="')
            i = draw(st.integers(1, len(parts) - 1))
            rest = parts[i].split('"', 1)
            v = draw(values).replace('"', "&quot;").replace("<", "&lt;").replace("&", "&amp;")
            parts[i] = v + '"' + (rest[1] if len(rest) > 1 else "")
            text = '="'.join(parts)
        elif op == 1:  # delete a slice
            a = draw(st.integers(0, len(text) - 1))
            text = text[:a] + text[a + draw(st.integers(0, 50)) :]
        elif op == 2:  # insert raw characters
            a = draw(st.integers(0, len(text)))
            text = text[:a] + draw(st.text(max_size=8)) + text[a:]
        else:  # duplicate an element line
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_yield_rows_or_typed_failure(plan, text):
    try:
        r = map_document(plan, text)
    except DocumentFailure as f:
        assert f.stage in ("read", "parse", "validate", "map") and f.reason
        return
    for table, rows in r.rows.items():
        tp = next(t for t in plan.tables if t.name == table)
        keys = [tuple(row[tp.stored_names.index(k)] for k in tp.primary_key) for row in rows]
        assert len(keys) == len(set(keys)), f"duplicate key in {table}"
        assert all(None not in k for k in keys)
