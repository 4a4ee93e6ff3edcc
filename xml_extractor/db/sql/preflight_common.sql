-- Named queries of `xml-extractor preflight` (xml_extractor/preflight.py), same format as
-- common.sql: read-only catalogue questions, one per check, overridden by preflight_<dialect>.sql.

-- name: pf_source_count
-- The source table's exact row count (SQLite; PostgreSQL when the table was never analyzed).
SELECT COUNT(*) FROM {src};

-- name: pf_sample_bytes
-- The first :head bytes of the sampled documents as stored (SQLite: whatever the TEXT value holds).
SELECT s.{src_id}, substr(CAST(s.{src_xml} AS BLOB), 1, :head) FROM {src} s WHERE s.{src_id} IN (:ids);
