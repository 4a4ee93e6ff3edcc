"""xml-extractor: XML documents in a database table -> rows of a normalized schema, driven by a
declarative mapping contract. The CLI (``xml-extractor``) is a thin layer over this library."""

from __future__ import annotations

__version__ = "0.1.0"

from .contract.compiler import compile_contract
from .contract.loader import Contract, load_contract
from .errors import ConfigError, ContractError, DocumentFailure
from .mapping import MappedApplication, map_document

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
