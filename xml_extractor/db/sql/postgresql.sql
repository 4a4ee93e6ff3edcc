-- PostgreSQL overrides.

-- name: queue_seed
-- One chunk of the app_id range, unless it is already there.
INSERT INTO {queue} (chunk_id, lo, hi, claims) VALUES (:chunk_id, :lo, :hi, 0) ON CONFLICT (chunk_id) DO NOTHING;

-- name: queue_claim
-- One statement: pick the first free or expired chunk, skipping rows other instances hold locked.
UPDATE {queue} SET owner = :owner, lease_until = {lease_expr}, claims = claims + 1
WHERE chunk_id = (
    SELECT chunk_id FROM {queue}
    WHERE done_at IS NULL AND (owner IS NULL OR lease_until < {now})
      AND chunk_id > :after_chunk AND hi >= :id_lo AND lo <= :id_hi
    ORDER BY chunk_id LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING chunk_id, lo, hi;

-- fragment: doc_bytes
-- The bytes of source row s's document as the client reads them (UTF-8): textsend converts them.
-- A SQL_ASCII database has nothing to convert from, and there textsend (like sending the text
-- itself) checks the bytes are UTF-8 and refuses the whole statement over one document's bad
-- byte ("invalid byte sequence"), stopping the run; there the raw bytes are sent (convert_to to
-- SQL_ASCII checks nothing) and Python decodes each document alone: a bad one fails at stage parse.
CASE WHEN current_setting('server_encoding') = 'SQL_ASCII' THEN convert_to(s.{src_xml}, 'SQL_ASCII') ELSE textsend(s.{src_xml}) END

-- name: fetch_heads
-- Only what the contract reads: the document up to the end of the scope element, and its last
-- 200 bytes (to check it is complete), so the ~95% that is vendor payload never crosses the
-- connection. Everything is done on the bytes of one detoasted copy ({doc_bytes}, kept by OFFSET 0):
-- character-based left()/right() count characters from the start and cost 5-8x more (measured:
-- 1.17 ms a document with strpos/left/right, 0.15 ms this way).
SELECT x.id,
       CASE WHEN x.p > 0 THEN substring(x.b FROM 1 FOR x.p + x.m - 1) ELSE x.b END,
       CASE WHEN x.p > 0 THEN substring(x.b FROM greatest(1, length(x.b) - 199)) END
FROM (SELECT y.id, y.b, position(convert_to(:marker, 'UTF8') IN y.b) AS p, CAST(:marker_bytes AS int) AS m
      FROM (SELECT s.{src_id} AS id, {doc_bytes} AS b FROM {src} s WHERE s.{src_id} IN (:ids) OFFSET 0) y
      OFFSET 0) x;

-- name: fetch_documents
-- Whole documents of a batch (when a head did not settle one), as bytes like fetch_heads ({doc_bytes}).
SELECT s.{src_id}, {doc_bytes} FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: stats_log_rows
-- The row count the planner believes the log has (-1: never analyzed).
SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :table;

-- name: source_insert_new
-- One document into the source table unless its id is already there (a concurrent load won).
INSERT INTO {src} ({src_id}, {src_xml}) VALUES (:app_id, :xml) ON CONFLICT DO NOTHING;

-- name: queue_lock
-- Runs fixing or adopting the work queue's chunk width take turns (until the transaction ends):
-- two started at once with different --chunk-size values otherwise both see an empty queue.
SELECT pg_advisory_xact_lock(7215016);

-- name: init_lock
-- init-db's DDL and seed, one at a time (until the transaction ends): concurrent CREATE TABLE IF
-- NOT EXISTS on a fresh database otherwise fails in one of them (pg_type unique violation).
SELECT pg_advisory_xact_lock(7215015);

-- name: schema_has_index
-- Does this index exist in the target schema (reconcile skips a check its unique index forbids).
SELECT COUNT(*) FROM pg_indexes WHERE schemaname = :schema AND indexname = :index;
