"""Hostile and broken input: each fails alone with a stage and reason; nothing from an external
entity is ever read; memory stays bounded."""
import resource

import pytest

from hostile import cases
from xml_extractor.errors import DocumentFailure
from xml_extractor.mapping import map_document

CASES = cases(5000)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case(plan, name):
    text, stage, expected = CASES[name]
    if stage is None:
        r = map_document(plan, text, expected_app_id=expected)
        rows = r.as_dicts(plan)
        assert rows["app_base"][0]["app_id"] == expected
        if name == "five_mb_attribute":
            assert rows["app_base"][0]["campaign_num"] is None
            (ev,) = [e for e in r.events if e[1] == "campaign_num"]
            assert "5000000 characters in all" in ev[3] and len(ev[3]) < 2100
        if name == "cp1252_bytes":
            assert rows["app_contact_base"][0]["first_name"] == "JOS\u00c9 M\u00dcLLER"
    else:
        with pytest.raises(DocumentFailure) as e:
            map_document(plan, text, expected_app_id=expected)
        assert e.value.stage == stage, e.value.reason
        assert e.value.reason
        assert "root:x:0" not in e.value.reason


def test_dtd_is_refused_with_a_clear_reason(plan):
    with pytest.raises(DocumentFailure, match="DOCTYPE/DTD is not allowed"):
        map_document(plan, CASES["xxe_file"][0], 5000)


def test_memory_stays_bounded(plan):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        map_document(plan, CASES["twenty_mb"][0], 5015)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 150, f"peak memory grew {grown_mb:.0f} MB for a 20 MB document"
