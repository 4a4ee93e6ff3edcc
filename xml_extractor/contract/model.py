"""The validated contract as data: tables, columns, keys, enums. What the loader builds and every
other layer (compiler, DDL, migration, the run) reads; no behaviour beyond lookups."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ColumnDef:
    name: str
    type: str
    length: int | None
    precision: int | None
    scale: int | None
    nullable: bool
    stored: bool
    spec: dict


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    references: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableDef:
    name: str
    columns: tuple[ColumnDef, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...]
    indexes: tuple[tuple[str, tuple[str, ...]], ...]
    app_id_column: str
    spec: dict

    @property
    def stored_columns(self) -> tuple[ColumnDef, ...]:
        return tuple(c for c in self.columns if c.stored)


@dataclass(frozen=True)
class EnumValue:
    enum: str
    code: str
    id: int
    description: str


@dataclass
class Contract:
    """A validated contract: the single source of truth for DDL, enum seeds and mapping."""

    raw: dict
    path: str
    name: str
    version: str
    digest: str
    target_schema: str
    source_schema: str | None
    source_table: str
    source_id_column: str
    source_xml_column: str
    source_min_length: int
    tables: list[TableDef]
    enums: dict[str, list[EnumValue]]
    log_table: str = "processing_log"
    event_table: str = "data_quality_event"
    queue_table: str = "work_queue"
    progress_table: str = "run_progress"
    enum_table: str = "app_enums"
    extra: dict = field(default_factory=dict)

    def table(self, name: str) -> TableDef:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def version_tag(self) -> str:
        """What processing_log records: contract name, declared version and content hash."""
        return f"{self.name}@{self.version}#{self.digest[:12]}"
