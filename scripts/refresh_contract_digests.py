"""Validate every packaged contract against the contract schema and write their validation digests
to xml_extractor/contracts/validated.sha256, which lets load_contract skip the JSON Schema pass for
those exact bytes. Run it after editing a packaged contract or schema.json (tests/test_contract.py
fails until then): ``python scripts/refresh_contract_digests.py``."""

from __future__ import annotations

import json
from pathlib import Path

from xml_extractor.contract.loader import (
    VALIDATED_DIGESTS,
    packaged_contracts,
    resolve_contract_path,
    validate_schema,
    validation_digest,
)


def expected_listing() -> str:
    """The file's content: one ``<digest>  <name>.json`` line per packaged contract, each validated."""
    lines = []
    for name in packaged_contracts():
        path = resolve_contract_path(name)
        data = path.read_bytes()
        validate_schema(json.loads(data.decode("utf-8")), str(path))  # raises if it is not valid
        lines.append(f"{validation_digest(data)}  {name}.json\n")
    return "".join(lines)


if __name__ == "__main__":
    target = (
        Path(__file__).resolve().parent.parent / "xml_extractor" / "contracts" / VALIDATED_DIGESTS
    )
    target.write_text(expected_listing(), encoding="utf-8", newline="\n")
    print(f"wrote {target}")
