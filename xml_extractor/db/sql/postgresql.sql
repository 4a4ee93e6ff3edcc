-- PostgreSQL overrides.

-- name: queue_seed
INSERT INTO {queue} (chunk_id, lo, hi, claims) VALUES (?, ?, ?, 0) ON CONFLICT (chunk_id) DO NOTHING;

-- name: queue_claim
-- One statement: pick the first free or expired chunk, skipping rows other instances hold locked.
UPDATE {queue} SET owner = ?, lease_until = {lease_expr}, claims = claims + 1
WHERE chunk_id = (
    SELECT chunk_id FROM {queue}
    WHERE done_at IS NULL AND (owner IS NULL OR lease_until < {now})
    ORDER BY chunk_id LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING chunk_id, lo, hi;
