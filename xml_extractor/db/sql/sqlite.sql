-- SQLite overrides. Claims run inside a short BEGIN IMMEDIATE taken by the caller.

-- name: queue_seed
-- One chunk of the app_id range, unless it is already there.
INSERT OR IGNORE INTO {queue} (chunk_id, lo, hi, claims) VALUES (:chunk_id, :lo, :hi, 0);

-- name: queue_pick
-- The first free or expired unfinished chunk after :after_chunk overlapping [:id_lo, :id_hi]
-- (inside BEGIN IMMEDIATE; queue_take follows).
SELECT chunk_id, lo, hi FROM {queue}
WHERE done_at IS NULL AND (owner IS NULL OR lease_until < {now})
  AND chunk_id > :after_chunk AND hi >= :id_lo AND lo <= :id_hi
ORDER BY chunk_id LIMIT 1;

-- name: queue_take
-- Claim the chunk queue_pick found.
UPDATE {queue} SET owner = :owner, lease_until = {lease_expr}, claims = claims + 1 WHERE chunk_id = :chunk_id;
