-- preflight's SQL Server queries (see preflight_common.sql). Each runs with the permissions a
-- migration login has: catalogue views and property functions, no server-level state except
-- where said.

-- name: pf_connection
-- This session's encryption, transport and authentication (needs VIEW SERVER STATE).
SELECT encrypt_option, net_transport, auth_scheme FROM sys.dm_exec_connections WHERE session_id = @@SPID;

-- name: pf_server
-- Version, edition, engine edition (4: Express) and the database connected to.
SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128)), CAST(SERVERPROPERTY('Edition') AS NVARCHAR(128)),
       CAST(SERVERPROPERTY('EngineEdition') AS INT), DB_NAME();

-- name: pf_database_permissions
-- CREATE TABLE and CREATE SCHEMA in the database, whether the target schema exists, ALTER on it.
SELECT HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE TABLE'), HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE SCHEMA'),
       CASE WHEN SCHEMA_ID(:schema) IS NULL THEN 0 ELSE 1 END, HAS_PERMS_BY_NAME(:schema, 'SCHEMA', 'ALTER');

-- name: pf_table_permissions
-- Whether a table exists, and SELECT, INSERT, UPDATE, DELETE on it.
SELECT CASE WHEN OBJECT_ID(:qtable, 'U') IS NULL THEN 0 ELSE 1 END, HAS_PERMS_BY_NAME(:qtable, 'OBJECT', 'SELECT'),
       HAS_PERMS_BY_NAME(:qtable, 'OBJECT', 'INSERT'), HAS_PERMS_BY_NAME(:qtable, 'OBJECT', 'UPDATE'),
       HAS_PERMS_BY_NAME(:qtable, 'OBJECT', 'DELETE');

-- name: pf_lock
-- sp_getapplock inside a transaction, as init-db and the work queue need it: its return code
-- (0/1 granted, -1 timeout, -999 not in a transaction or bad call) and the transaction count. The
-- caller rolls back, which releases it.
DECLARE @r INT;
SET NOCOUNT ON;
BEGIN TRANSACTION;
EXEC @r = sp_getapplock @Resource = N'xml_extractor:preflight', @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 10000;
SELECT @r, @@TRANCOUNT;

-- name: pf_collation
-- The database's collation and its code page (65001: a _UTF8 collation).
SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Collation') AS NVARCHAR(128)),
       CAST(COLLATIONPROPERTY(CAST(DATABASEPROPERTYEX(DB_NAME(), 'Collation') AS NVARCHAR(128)), 'CodePage') AS INT);

-- name: pf_ci_keys
-- Key columns (in a unique index or primary key) of the target schema's tables under a
-- case-insensitive collation: keys that differ only by case are one key there.
SELECT DISTINCT o.name, c.name, c.collation_name FROM sys.columns c
JOIN sys.objects o ON o.object_id = c.object_id
JOIN sys.index_columns ic ON ic.object_id = c.object_id AND ic.column_id = c.column_id
JOIN sys.indexes i ON i.object_id = ic.object_id AND i.index_id = ic.index_id
WHERE o.type = 'U' AND o.schema_id = SCHEMA_ID(:schema) AND i.is_unique = 1 AND c.collation_name LIKE N'%[_]CI[_]%'
ORDER BY o.name, c.name;

-- name: pf_rcsi
-- READ_COMMITTED_SNAPSHOT and snapshot isolation of this database.
SELECT is_read_committed_snapshot_on, snapshot_isolation_state_desc FROM sys.databases WHERE database_id = DB_ID();

-- name: pf_source_columns
-- The source table's columns: name, type, max_length (-1: max), collation (no rows: no such table).
SELECT c.name, t.name, c.max_length, c.collation_name FROM sys.columns c
JOIN sys.types t ON t.user_type_id = c.system_type_id
WHERE c.object_id = OBJECT_ID(:qsource) ORDER BY c.column_id;

-- name: pf_source_like
-- Tables and views whose name equals the source table's but for case.
SELECT s.name, o.name FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id
WHERE o.type IN ('U', 'V') AND LOWER(o.name) = LOWER(:table);

-- name: pf_source_rows
-- The source table's row count from the partition metadata (no scan of 11 million rows).
SELECT SUM(p.rows) FROM sys.partitions p WHERE p.object_id = OBJECT_ID(:qsource) AND p.index_id IN (0, 1);

-- name: pf_sample_bytes
-- The first :head bytes of the sampled documents as stored (varchar: the column's code page; nvarchar: UTF-16LE).
SELECT s.{src_id}, SUBSTRING(CAST(s.{src_xml} AS VARBINARY(MAX)), 1, :head) FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: pf_space
-- The data files: size, max_size (-1: unlimited; pages of 8 KB) and pages used.
SELECT f.name, CAST(f.size AS BIGINT), CAST(f.max_size AS BIGINT), CAST(FILEPROPERTY(f.name, 'SpaceUsed') AS BIGINT)
FROM sys.database_files f WHERE f.type = 0;

-- name: pf_volume
-- Free bytes on the volumes of the data files (needs VIEW SERVER STATE; optional).
SELECT MIN(v.available_bytes) FROM sys.database_files f CROSS APPLY sys.dm_os_volume_stats(DB_ID(), f.file_id) v WHERE f.type = 0;
