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

-- name: fetch_heads
-- Only what the contract reads: the text up to the end of the scope element, and the last 200
-- characters (to check the document is complete). strpos finds the marker server-side, so the
-- ~95% of each document that is vendor payload never crosses the connection.
-- Params: marker, marker length; then the ids.
SELECT x.id,
       CASE WHEN x.p > 0 THEN left(x.doc, x.p + x.m - 1) ELSE x.doc END,
       CASE WHEN x.p > 0 THEN right(x.doc, 200) END
FROM (SELECT s.{src_id} AS id, s.{src_xml} AS doc, strpos(s.{src_xml}, ?) AS p, ?::int AS m
      FROM {src} s WHERE s.{src_id} IN ({ids})) x;
