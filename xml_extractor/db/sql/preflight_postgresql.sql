-- preflight's PostgreSQL queries (see preflight_common.sql).

-- name: pf_connection
-- This session's TLS state (no row: statistics off).
SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid();

-- name: pf_server
-- Server version and the database connected to.
SELECT current_setting('server_version'), current_setting('server_version_num'), current_database();

-- name: pf_database_permissions
-- CREATE on the database (a missing target schema is created), whether the target schema exists, CREATE and USAGE on it.
SELECT has_database_privilege(current_database(), 'CREATE'),
       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema),
       CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema) THEN has_schema_privilege(:schema, 'CREATE') END,
       CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema) THEN has_schema_privilege(:schema, 'USAGE') END;

-- name: pf_table_permissions
-- Whether a table exists, and SELECT, INSERT, UPDATE, DELETE on it.
SELECT to_regclass(:qtable) IS NOT NULL,
       CASE WHEN to_regclass(:qtable) IS NOT NULL THEN has_table_privilege(:qtable, 'SELECT') END,
       CASE WHEN to_regclass(:qtable) IS NOT NULL THEN has_table_privilege(:qtable, 'INSERT') END,
       CASE WHEN to_regclass(:qtable) IS NOT NULL THEN has_table_privilege(:qtable, 'UPDATE') END,
       CASE WHEN to_regclass(:qtable) IS NOT NULL THEN has_table_privilege(:qtable, 'DELETE') END;

-- name: pf_lock
-- Can this session take a transaction-scoped advisory lock (init-db and the work queue use them)?
SELECT pg_try_advisory_xact_lock(7215099);

-- name: pf_collation
-- Server encoding and the database's collation and character classification.
SELECT current_setting('server_encoding'), d.datcollate, d.datctype FROM pg_database d WHERE d.datname = current_database();

-- name: pf_nondeterministic
-- Columns of the target schema or the source table under a non-deterministic collation (case- or accent-insensitive keys).
SELECT n.nspname, c.relname, a.attname, co.collname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_collation co ON co.oid = a.attcollation
WHERE NOT co.collisdeterministic AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  AND (n.nspname = :schema OR c.oid = to_regclass(:qsource))
ORDER BY 1, 2, 3;

-- name: pf_source_columns
-- The source table's columns as the tool's queries resolve it (search_path): name, type (no rows: no such table).
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = to_regclass(:qsource) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum;

-- name: pf_source_like
-- Tables and views whose name equals the source table's but for case.
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND lower(c.relname) = lower(:table) AND n.nspname NOT IN ('pg_catalog', 'information_schema');

-- name: pf_source_rows
-- The planner's row estimate of the source table (-1: never analyzed).
SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass(:qsource);

-- name: pf_sample_bytes
-- The first :head bytes of the sampled documents as the run reads them ({doc_bytes}: a SQL_ASCII database's raw bytes).
SELECT s.{src_id}, substring({doc_bytes} FROM 1 FOR :head) FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: pf_space
-- The database's size on disk, in bytes.
SELECT pg_database_size(current_database());
