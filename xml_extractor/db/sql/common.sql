-- Named queries shared by every dialect. A dialect file (sqlite.sql, postgresql.sql, mssql.sql)
-- overrides any of them by name. Placeholders in braces are identifiers, validated against
-- ^[A-Za-z_][A-Za-z0-9_]*$ and quoted by the dialect before substitution; every value is a
-- bound parameter (?), never formatted into the text.

-- name: pending_ids
-- Keyset page of this instance's unprocessed applications (never OFFSET). Params:
-- after_id, id_lo, id_hi, modulus, remainder, limit.
SELECT s.{src_id} FROM {src} s
WHERE s.{src_id} > ? AND s.{src_id} BETWEEN ? AND ?
  AND (s.{src_id} % ?) = ?
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id})
ORDER BY s.{src_id}
LIMIT ?;

-- name: retry_ids
-- Keyset page of failed applications with attempts left. Params: after_id, id_lo, id_hi,
-- modulus, remainder, max_attempts, limit.
SELECT s.{src_id} FROM {src} s
WHERE s.{src_id} > ? AND s.{src_id} BETWEEN ? AND ?
  AND (s.{src_id} % ?) = ?
  AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'failed')
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'success')
  AND (SELECT MAX(l.attempt) FROM {log} l WHERE l.app_id = s.{src_id}) < ?
ORDER BY s.{src_id}
LIMIT ?;

-- name: count_pending
SELECT COUNT(*) FROM {src} s
WHERE s.{src_id} BETWEEN ? AND ? AND (s.{src_id} % ?) = ?
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id});

-- name: count_retry
SELECT COUNT(*) FROM {src} s
WHERE s.{src_id} BETWEEN ? AND ? AND (s.{src_id} % ?) = ?
  AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'failed')
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'success')
  AND (SELECT MAX(l.attempt) FROM {log} l WHERE l.app_id = s.{src_id}) < ?;

-- name: last_attempts
-- The highest attempt logged so far for each of a batch's applications.
SELECT app_id, MAX(attempt) FROM {log} WHERE app_id IN ({ids}) GROUP BY app_id;

-- name: fetch_documents
SELECT s.{src_id}, s.{src_xml} FROM {src} s WHERE s.{src_id} IN ({ids});

-- name: logged_status
SELECT app_id, status, attempt FROM {log} WHERE app_id = ? ORDER BY attempt;

-- name: contact_owners
-- Which other application already owns any of these con_ids.
SELECT {key_col}, app_id FROM {contact_table} WHERE {key_col} IN ({ids}) AND app_id <> ?;

-- name: progress_update
-- This worker's counters, inside the batch transaction (the row is this worker's alone: no waits).
UPDATE {progress} SET success = success + ?, failed = failed + ?, last_at = ? WHERE session_id = ? AND worker_pid = ?;

-- name: progress_insert
INSERT INTO {progress} (session_id, worker_pid, instance_id, instance_count, started_at, last_at, success, failed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: queue_bounds
SELECT MIN(s.{src_id}), MAX(s.{src_id}) FROM {src} s WHERE s.{src_id} BETWEEN ? AND ?;

-- name: queue_renew
UPDATE {queue} SET lease_until = {lease_expr} WHERE chunk_id = ? AND owner = ?;

-- name: queue_done
UPDATE {queue} SET done_at = {now}, owner = ? WHERE chunk_id = ? AND owner = ?;

-- name: queue_release
UPDATE {queue} SET owner = NULL, lease_until = NULL WHERE owner = ? AND done_at IS NULL;
