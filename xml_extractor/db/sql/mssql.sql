-- SQL Server overrides: TOP instead of LIMIT, UPDLOCK/READPAST for claims.

-- name: pending_ids
SELECT TOP (?) s.{src_id} FROM {src} s
WHERE s.{src_id} > ? AND s.{src_id} BETWEEN ? AND ?
  AND (s.{src_id} % ?) = ?
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id})
ORDER BY s.{src_id};

-- name: retry_ids
SELECT TOP (?) s.{src_id} FROM {src} s
WHERE s.{src_id} > ? AND s.{src_id} BETWEEN ? AND ?
  AND (s.{src_id} % ?) = ?
  AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'failed')
  AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'success')
  AND (SELECT MAX(l.attempt) FROM {log} l WHERE l.app_id = s.{src_id}) < ?
ORDER BY s.{src_id};

-- name: queue_seed
INSERT INTO {queue} (chunk_id, lo, hi, claims)
SELECT ?, ?, ?, 0 WHERE NOT EXISTS (SELECT 1 FROM {queue} WITH (UPDLOCK, HOLDLOCK) WHERE chunk_id = ?);

-- name: queue_claim
WITH c AS (
    SELECT TOP (1) chunk_id, lo, hi, owner, lease_until, claims FROM {queue} WITH (UPDLOCK, READPAST, ROWLOCK)
    WHERE done_at IS NULL AND (owner IS NULL OR lease_until < {now})
    ORDER BY chunk_id)
UPDATE c SET owner = ?, lease_until = {lease_expr}, claims = claims + 1
OUTPUT inserted.chunk_id, inserted.lo, inserted.hi;

-- name: fetch_heads
-- Only the text up to the end of the scope element and the last 200 characters (see postgresql.sql).
SELECT x.id,
       CASE WHEN x.p > 0 THEN LEFT(x.doc, x.p + x.m - 1) ELSE x.doc END,
       CASE WHEN x.p > 0 THEN RIGHT(x.doc, 200) END
FROM (SELECT s.{src_id} AS id, s.{src_xml} AS doc, CHARINDEX(?, s.{src_xml}) AS p, CAST(? AS INT) AS m
      FROM {src} s WHERE s.{src_id} IN ({ids})) x;
