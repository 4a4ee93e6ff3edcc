-- SQL Server overrides: UPDLOCK/READPAST for claims, OUTPUT instead of RETURNING. (Row limits are
-- the {top}/{limit} fragments of the common queries, not overrides.)

-- name: queue_seed
-- One chunk of the app_id range, unless it is already there (no INSERT ... ON CONFLICT here).
INSERT INTO {queue} (chunk_id, lo, hi, claims)
SELECT :chunk_id, :lo, :hi, 0 WHERE NOT EXISTS (SELECT 1 FROM {queue} WITH (UPDLOCK, HOLDLOCK) WHERE chunk_id = :chunk_id);

-- name: queue_claim
-- One statement: take the first free or expired chunk, skipping rows other instances hold locked.
WITH c AS (
    SELECT TOP (1) chunk_id, lo, hi, owner, lease_until, claims FROM {queue} WITH (UPDLOCK, READPAST, ROWLOCK)
    WHERE done_at IS NULL AND (owner IS NULL OR lease_until < {now})
      AND chunk_id > :after_chunk AND hi >= :id_lo AND lo <= :id_hi
    ORDER BY chunk_id)
UPDATE c SET owner = :owner, lease_until = {lease_expr}, claims = claims + 1
OUTPUT inserted.chunk_id, inserted.lo, inserted.hi;

-- name: queue_lock
-- Runs fixing or adopting the work queue's chunk width take turns (until the transaction ends):
-- two started at once with different --chunk-size values otherwise both see an empty queue.
EXEC sp_getapplock @Resource = N'xml_extractor:work-queue', @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 120000;

-- name: init_lock
-- init-db's DDL and seed, one at a time (until the transaction ends): IF OBJECT_ID(...) IS NULL
-- CREATE TABLE in two sessions at once otherwise fails in one ("There is already an object named").
-- After 120 s without the lock it goes on and the DDL's own error, if any, is reported.
EXEC sp_getapplock @Resource = N'xml_extractor:init-db', @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 120000;

-- name: fetch_heads
-- Only the text up to the end of the scope element and the last 200 characters (see postgresql.sql).
SELECT x.id,
       CASE WHEN x.p > 0 THEN LEFT(x.doc, x.p + x.m - 1) ELSE x.doc END,
       CASE WHEN x.p > 0 THEN RIGHT(x.doc, 200) END
FROM (SELECT s.{src_id} AS id, s.{src_xml} AS doc, CHARINDEX(:marker, s.{src_xml}) AS p, CAST(:marker_bytes AS INT) AS m
      FROM {src} s WHERE s.{src_id} IN (:ids)) x;

-- name: log_contract_version_list
-- The contract versions in the log (SQL Server: no aggregate in a recursive CTE member).
SELECT DISTINCT contract_version FROM {log};

-- name: schema_has_index
-- Does this unique index exist on the table.
SELECT COUNT(*) FROM sys.indexes WHERE name = :index AND object_id = OBJECT_ID(:qtable) AND is_unique = 1;

-- name: schema_index_columns
-- dialects: mssql
-- Every index of a table (PK and UNIQUE constraints too) with its columns: what ALTER COLUMN cannot change (db/migrate.py).
SELECT i.name, i.is_primary_key, i.is_unique, i.is_unique_constraint, i.type_desc, ic.is_included_column,
       ic.is_descending_key, c.name, i.filter_definition
FROM sys.indexes i
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
WHERE i.object_id = OBJECT_ID(:qtable) AND i.type IN (1, 2) AND i.is_hypothetical = 0
ORDER BY i.index_id, ic.is_included_column, ic.key_ordinal, ic.index_column_id;

-- name: schema_foreign_keys
-- dialects: mssql
-- The foreign keys from or to a table, one row per column pair in key order (db/migrate.py).
SELECT fk.name, SCHEMA_NAME(pt.schema_id), pt.name, pc.name, SCHEMA_NAME(rt.schema_id), rt.name, rc.name,
       fk.delete_referential_action_desc, fk.update_referential_action_desc
FROM sys.foreign_keys fk
JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id
JOIN sys.tables pt ON pt.object_id = fk.parent_object_id
JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id
JOIN sys.tables rt ON rt.object_id = fk.referenced_object_id
JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id
WHERE fk.parent_object_id = OBJECT_ID(:qtable) OR fk.referenced_object_id = OBJECT_ID(:qtable)
ORDER BY fk.name, fkc.constraint_column_id;
