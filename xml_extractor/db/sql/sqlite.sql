-- SQLite overrides. Claims run inside a short BEGIN IMMEDIATE taken by the caller.

-- name: queue_seed
-- One chunk of the app_id range, unless it is already there.
INSERT OR IGNORE INTO {queue} (chunk_id, lo, hi, claims) VALUES (:chunk_id, :lo, :hi, 0);

-- name: queue_pick
-- The first free or expired unfinished chunk after :after_chunk overlapping [:id_lo, :id_hi]
-- (inside BEGIN IMMEDIATE; queue_take follows).
SELECT chunk_id, lo, hi FROM {queue}
WHERE done_at IS NULL AND (owner IS NULL OR lease_until < {now})
  AND chunk_id > :after_chunk AND hi >= :id_lo AND lo <= :id_hi
ORDER BY chunk_id LIMIT 1;

-- name: queue_take
-- Claim the chunk queue_pick found.
UPDATE {queue} SET owner = :owner, lease_until = {lease_expr}, claims = claims + 1 WHERE chunk_id = :chunk_id;

-- name: stats_log_rows
-- The row count ANALYZE recorded for the log table (fails when there is no sqlite_stat1).
SELECT MAX(CAST(stat AS INTEGER)) FROM sqlite_stat1 WHERE tbl = :table;

-- name: schema_columns
-- A table's columns: name, declared type, -, -, -, nullable (YES/NO); no rows: no table.
SELECT name, type, NULL, NULL, NULL, CASE WHEN "notnull" = 1 THEN 'NO' ELSE 'YES' END
FROM pragma_table_info(:table) ORDER BY cid;

-- name: schema_primary_key
-- A table's primary key columns in key order.
SELECT name FROM pragma_table_info(:table) WHERE pk > 0 ORDER BY pk;

-- name: ops_results_since
-- As in common.sql; "+session_id" keeps SQLite from reading the whole (session_id, logged_at)
-- index in group order instead of the short logged_at range (its choice without statistics).
SELECT session_id, COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log} WHERE logged_at >= :since GROUP BY +session_id
UNION ALL
SELECT session_id, COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log_history} WHERE logged_at >= :since GROUP BY session_id;

-- name: source_insert_new
-- One document into the source table unless its id is already there (a concurrent load won).
INSERT OR IGNORE INTO {src} ({src_id}, {src_xml}) VALUES (:app_id, :xml);

-- name: schema_has_index
-- Does this unique index exist on the table.
SELECT COUNT(*) FROM pragma_index_list(:table) WHERE name = :index AND "unique" = 1;

-- name: fetch_documents_stored
-- Whole documents of a batch as their stored bytes (the driver decodes no text: parsing.StoredBytes)
-- and whether each is a TEXT value (strict UTF-8) or a BLOB (UTF-8, else cp1252); any other value
-- (NULL, a number) as it is.
SELECT s.{src_id},
       CASE WHEN typeof(s.{src_xml}) IN ('text', 'blob') THEN CAST(s.{src_xml} AS BLOB) ELSE s.{src_xml} END,
       typeof(s.{src_xml})
FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: fetch_blob_rows
-- A batch's rows for reading each document's head by incremental blob I/O (SQLiteDialect.read_heads):
-- the id, the rowid (_rowid_: SQLiteDialect.blob_rowid checked that no column shadows it), the
-- value's type (only a TEXT or BLOB value can be opened as a blob) and any other value as it is
-- (NULL, a number).
SELECT s.{src_id}, s._rowid_, typeof(s.{src_xml}),
       CASE WHEN typeof(s.{src_xml}) IN ('text', 'blob') THEN NULL ELSE s.{src_xml} END
FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: fetch_stored_by_rowid
-- Rows' documents as fetch_documents_stored gives them, by their rowids (:ids; a blob that would not
-- open).
SELECT CASE WHEN typeof(s.{src_xml}) IN ('text', 'blob') THEN CAST(s.{src_xml} AS BLOB) ELSE s.{src_xml} END,
       typeof(s.{src_xml})
FROM {src} s WHERE s._rowid_ IN (:ids);

-- name: blob_source
-- Whether documents can be read by blob: the source is a table (not a view) and TEXT values are
-- stored as UTF-8 (the database's encoding); and the names of its columns, generated and hidden
-- ones included (one may shadow _rowid_).
SELECT (SELECT type FROM sqlite_master WHERE name = :table COLLATE NOCASE),
       (SELECT encoding FROM pragma_encoding),
       (SELECT group_concat(lower(name), char(10)) FROM pragma_table_xinfo(:table));

-- name: blob_rowid_probe
-- Fails on a WITHOUT ROWID table (no rowid to open a blob by).
SELECT s._rowid_ FROM {src} s LIMIT 0;
