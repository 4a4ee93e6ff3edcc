-- Named queries shared by every dialect. A dialect file (sqlite.sql, postgresql.sql, mssql.sql)
-- overrides a query by name, only where the dialect differs.
--
-- Format (procrastinate's sql/queries.sql is the model):
--   -- name: query_name
--   -- One-line description (more comment lines may follow).
--   SELECT ... WHERE x = :param AND y IN (:ids) ...;
-- Values are NAMED parameters (:param), always bound, never formatted into the text: callers pass
-- a mapping, e.g. db.query(db.sql("pending_ids"), {"after_id": 0, ...}) or
-- db.query_named("logged_status", app_id=7). A name may appear more than once; a list value
-- expands to one bound marker per element (IN (:ids)). Placeholders in braces are identifiers
-- only, validated against ^[A-Za-z_][A-Za-z0-9_]*$ and quoted by the dialect before
-- substitution: {src} {src_id} {src_xml} {log} {events} {queue} {progress} {enums}, and the
-- dialect fragments {now}, {lease_expr} (takes :lease_seconds), {top} / {limit} (row limit, take
-- :limit: TOP (:limit) after SELECT on SQL Server, LIMIT :limit at the end elsewhere).
-- tests/test_sql_dialects.py parses every query of every dialect with sqlglot.
--
-- An instance's share is the NON-NEGATIVE remainder (((id % :modulus) + :modulus) % :modulus) =
-- :remainder, identical to Python's id % N (see processing/partition.py): SQL's % truncates
-- toward zero, so a negative id would otherwise belong to no instance.

-- name: pending_ids
-- Keyset page of this instance's unprocessed applications (never OFFSET).
SELECT {top} s.{src_id} FROM {src} s
WHERE s.{src_id} > :after_id AND s.{src_id} BETWEEN :id_lo AND :id_hi
  AND (((s.{src_id} % :modulus) + :modulus) % :modulus) = :remainder
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id})
ORDER BY s.{src_id}
{limit};

-- name: retry_ids
-- Keyset page of failed applications with attempts left.
SELECT {top} s.{src_id} FROM {src} s
WHERE s.{src_id} > :after_id AND s.{src_id} BETWEEN :id_lo AND :id_hi
  AND (((s.{src_id} % :modulus) + :modulus) % :modulus) = :remainder
  AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'failed')
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'success')
  AND (SELECT MAX(l.attempt) FROM {log} l WHERE l.app_id = s.{src_id}) < :max_attempts
ORDER BY s.{src_id}
{limit};

-- name: count_pending
-- How many unprocessed applications this instance has (the progress bar's total).
SELECT COUNT(*) FROM {src} s
WHERE s.{src_id} BETWEEN :id_lo AND :id_hi AND (((s.{src_id} % :modulus) + :modulus) % :modulus) = :remainder
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id});

-- name: count_retry
-- How many failed applications with attempts left this instance has.
SELECT COUNT(*) FROM {src} s
WHERE s.{src_id} BETWEEN :id_lo AND :id_hi AND (((s.{src_id} % :modulus) + :modulus) % :modulus) = :remainder
  AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'failed')
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'success')
  AND (SELECT MAX(l.attempt) FROM {log} l WHERE l.app_id = s.{src_id}) < :max_attempts;

-- name: last_attempts
-- The highest attempt logged so far for each of a batch's applications.
SELECT app_id, MAX(attempt) FROM {log} WHERE app_id IN (:ids) GROUP BY app_id;

-- name: fetch_documents
-- Whole documents of a batch (SQLite; the server dialects fetch heads, see fetch_heads).
SELECT s.{src_id}, s.{src_xml} FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: logged_status
-- Every logged attempt of one application (was it written after all?).
SELECT app_id, status, attempt FROM {log} WHERE app_id = :app_id ORDER BY attempt;

-- name: contact_owners
-- Which other application already owns any of these con_ids.
SELECT {key_col}, app_id FROM {contact_table} WHERE {key_col} IN (:keys) AND app_id <> :app_id;

-- name: progress_update
-- This worker's counters, inside the batch transaction (the row is this worker's alone: no waits).
UPDATE {progress} SET success = success + :success, failed = failed + :failed, last_at = :now
WHERE session_id = :session_id AND worker_pid = :worker_pid;

-- name: progress_insert
-- This worker's counters row, the first time it commits a batch in this run.
INSERT INTO {progress} (session_id, worker_pid, instance_id, instance_count, started_at, last_at, success, failed)
VALUES (:session_id, :worker_pid, :instance_id, :instance_count, :now, :now, :success, :failed);

-- name: queue_bounds
-- The lowest and highest source app_id in the run's range (the chunks to seed).
SELECT MIN(s.{src_id}), MAX(s.{src_id}) FROM {src} s WHERE s.{src_id} BETWEEN :id_lo AND :id_hi;

-- name: queue_renew
-- Extend the lease of a chunk this owner holds.
UPDATE {queue} SET lease_until = {lease_expr} WHERE chunk_id = :chunk_id AND owner = :owner;

-- name: queue_done
-- Mark a chunk this owner holds as finished.
UPDATE {queue} SET done_at = {now}, owner = :owner WHERE chunk_id = :chunk_id AND owner = :owner;

-- name: queue_release
-- Give back every unfinished chunk this owner holds (clean shutdown).
UPDATE {queue} SET owner = NULL, lease_until = NULL WHERE owner = :owner AND done_at IS NULL;

-- name: queue_unfinished
-- How many chunks are not done yet.
SELECT COUNT(*) FROM {queue} WHERE done_at IS NULL;
