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
