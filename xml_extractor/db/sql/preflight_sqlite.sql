-- preflight's SQLite queries (see preflight_common.sql).

-- name: pf_server
-- The SQLite library's version.
SELECT sqlite_version();

-- name: pf_encoding
-- The database file's text encoding (UTF-8, UTF-16le, UTF-16be).
SELECT encoding FROM pragma_encoding();

-- name: pf_source_columns
-- The source table's columns: name, declared type (no rows: no such table).
SELECT name, type FROM pragma_table_info(:table) ORDER BY cid;

-- name: pf_source_like
-- Tables and views whose name equals the source table's but for case.
SELECT NULL, name FROM sqlite_master WHERE type IN ('table', 'view') AND lower(name) = lower(:table);
