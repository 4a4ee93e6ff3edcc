"""xml-extractor: XML documents in a database table -> rows of a normalized schema, driven by a
declarative mapping contract. The CLI (``xml-extractor``) is a thin layer over this library.

The names below are imported on first use, so that ``import xml_extractor`` (which every
submodule's import and the command line's entry point begin with) costs nothing: the entry
point holds the stop signals before anything heavy is imported (:mod:`xml_extractor.starting`),
and a spawned worker imports only what it uses."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .contract.compiler import compile_contract
    from .contract.loader import Contract, load_contract
    from .errors import ConfigError, ContractError, DocumentFailure
    from .mapping import MappedApplication, map_document

_LAZY = {
    "compile_contract": ".contract.compiler",
    "Contract": ".contract.loader",
    "load_contract": ".contract.loader",
    "ConfigError": ".errors",
    "ContractError": ".errors",
    "DocumentFailure": ".errors",
    "MappedApplication": ".mapping",
    "map_document": ".mapping",
}


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Contract",
    "ConfigError",
    "ContractError",
    "DocumentFailure",
    "MappedApplication",
    "compile_contract",
    "load_contract",
    "map_document",
    "__version__",
]
