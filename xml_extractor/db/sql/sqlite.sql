-- SQLite overrides. Claims run inside a short BEGIN IMMEDIATE taken by the caller.

-- name: queue_seed
INSERT OR IGNORE INTO {queue} (chunk_id, lo, hi, claims) VALUES (?, ?, ?, 0);

-- name: queue_pick
SELECT chunk_id, lo, hi FROM {queue}
WHERE done_at IS NULL AND (owner IS NULL OR lease_until < {now})
ORDER BY chunk_id LIMIT 1;

-- name: queue_take
UPDATE {queue} SET owner = ?, lease_until = {lease_expr}, claims = claims + 1 WHERE chunk_id = ?;
