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
-- two started at once with different --chunk-size values otherwise both see an empty queue. The
-- lock is held or the batch raises (see init_lock: the transaction is opened first, the return
-- code is checked).
DECLARE @r int;
IF @@TRANCOUNT = 0 BEGIN TRANSACTION;
IF @@TRANCOUNT > 1 COMMIT TRANSACTION;
EXEC @r = sp_getapplock @Resource = N'xml_extractor:work-queue', @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 120000;
IF @r < 0 RAISERROR(N'lock request time out: sp_getapplock(xml_extractor:work-queue) returned %d (-1 timed out after 120 s, -2 cancelled, -3 deadlock victim, -999 no transaction)', 16, 1, @r);

-- name: init_lock
-- init-db's DDL and seed, one at a time (until the transaction ends): IF OBJECT_ID(...) IS NULL
-- CREATE TABLE in two sessions at once otherwise fails in one ("There is already an object named").
-- A Transaction-owned applock needs an open transaction, and EXEC does not open the driver's
-- implicit one (SQL_AUTOCOMMIT_OFF = SET IMPLICIT_TRANSACTIONS ON): without one sp_getapplock
-- returns -999 with an informational message and takes nothing. Under implicit transactions an
-- explicit BEGIN TRANSACTION opens two nested levels (SET IMPLICIT_TRANSACTIONS docs), and the
-- driver's commit (SQLEndTran) ends one: the inner level is committed at once (a nested COMMIT
-- only decrements @@TRANCOUNT), leaving exactly the one transaction the driver commits or rolls
-- back. Any negative return code (timeout, deadlock, no transaction) raises: never a silent no-op.
DECLARE @r int;
IF @@TRANCOUNT = 0 BEGIN TRANSACTION;
IF @@TRANCOUNT > 1 COMMIT TRANSACTION;
EXEC @r = sp_getapplock @Resource = N'xml_extractor:init-db', @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 120000;
IF @r < 0 RAISERROR(N'lock request time out: sp_getapplock(xml_extractor:init-db) returned %d (-1 timed out after 120 s, -2 cancelled, -3 deadlock victim, -999 no transaction)', 16, 1, @r);

-- name: fetch_heads
-- The head and tail of a varchar/varbinary document as BYTES (see postgresql.sql: the same
-- semantics): the driver would decode a varchar through the column's code page (a UTF-8 BOM
-- becomes 'ï»¿', UTF-8 text mojibake); bytes are decoded in Python as every engine's are
-- (parsing.decode_source: BOM dropped, UTF-8, cp1252 for older rows, mixed bytes fail at parse).
-- Everything is done on one VARBINARY(MAX) copy: CHARINDEX searches it byte for byte (no
-- conversion of the document to NVARCHAR, no collation: a _UTF8 or double-byte collation would
-- count characters), SUBSTRING/DATALENGTH count bytes; the tail is the last 200 bytes.
SELECT x.id,
       CASE WHEN x.p > 0 THEN SUBSTRING(x.b, 1, x.p + x.m - 1) ELSE x.b END,
       CASE WHEN x.p > 0 THEN SUBSTRING(x.b, CASE WHEN DATALENGTH(x.b) > 200 THEN DATALENGTH(x.b) - 199 ELSE 1 END, 200) END
FROM (SELECT y.id, y.b, CHARINDEX(CAST(CAST(:marker AS VARCHAR(100)) AS VARBINARY(100)), y.b) AS p, CAST(:marker_bytes AS INT) AS m
      FROM (SELECT s.{src_id} AS id, CAST(s.{src_xml} AS VARBINARY(MAX)) AS b FROM {src} s WHERE s.{src_id} IN (:ids)) y) x;

-- name: fetch_documents
-- Whole documents of a batch (when a head did not settle one), as bytes like fetch_heads.
SELECT s.{src_id}, CAST(s.{src_xml} AS VARBINARY(MAX)) FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: fetch_heads_text
-- fetch_heads for an NVARCHAR source column: its text is Unicode, what the driver returns is the
-- text (no code page between), so the head and the last 200 characters are cut in characters
-- (:marker_chars: the marker's length in UTF-16 units, as CHARINDEX and LEFT count).
SELECT x.id,
       CASE WHEN x.p > 0 THEN LEFT(x.doc, x.p + x.m - 1) ELSE x.doc END,
       CASE WHEN x.p > 0 THEN RIGHT(x.doc, 200) END
FROM (SELECT s.{src_id} AS id, s.{src_xml} AS doc, CHARINDEX(CAST(:marker AS NVARCHAR(100)), s.{src_xml}) AS p,
             CAST(:marker_chars AS INT) AS m
      FROM {src} s WHERE s.{src_id} IN (:ids)) x;

-- name: fetch_documents_text
-- Whole documents of a batch, NVARCHAR source column: the text.
SELECT s.{src_id}, s.{src_xml} FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: source_column_type
-- The source xml column's type (base type, max_length in bytes: -1 = max) and collation: decides
-- how documents are fetched (db/mssql.py source_kind), read once per connection.
SELECT t.name, c.max_length, c.collation_name FROM sys.columns c
JOIN sys.types t ON t.user_type_id = c.system_type_id
WHERE c.object_id = OBJECT_ID(:qtable) AND c.name = :column;

-- name: source_insert_new
-- One document into the source table unless its id is already there (a concurrent load won:
-- UPDLOCK, HOLDLOCK keep the key range locked from the check to the insert, as queue_seed does).
-- :xml is bound as the column takes it (db/mssql.py source_value): UTF-8 bytes for a varchar or
-- varbinary column (stored byte for byte, no code-page conversion), text for nvarchar.
INSERT INTO {src} ({src_id}, {src_xml})
SELECT :app_id, :xml WHERE NOT EXISTS (SELECT 1 FROM {src} s WITH (UPDLOCK, HOLDLOCK) WHERE s.{src_id} = :app_id);

-- name: log_contract_version_list
-- The contract versions in the log by a loose scan of ix_processing_log_contract_version: one
-- index seek per version, not a read of every log row. T-SQL allows no aggregate or TOP in a
-- recursive member; ROW_NUMBER() over the seek, filtered to 1, is the allowed form of "the next
-- version". MAXRECURSION 0: any number of versions (one level each).
WITH v(cv) AS (
    SELECT MIN(contract_version) FROM {log}
    UNION ALL
    SELECT n.cv FROM (
        SELECT l.contract_version AS cv, ROW_NUMBER() OVER (ORDER BY l.contract_version) AS rn
        FROM v JOIN {log} l ON l.contract_version > v.cv) n
    WHERE n.rn = 1)
SELECT cv FROM v WHERE cv IS NOT NULL OPTION (MAXRECURSION 0);

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
