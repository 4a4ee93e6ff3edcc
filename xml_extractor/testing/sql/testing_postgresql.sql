-- synth_numbers and synth_source for postgresql (see testing_common.sql).

-- name: synth_numbers
-- 1..count with a timestamp spread evenly over span_ms ending at now.
CREATE TEMP TABLE synth_n AS
WITH g(n) AS (SELECT generate_series(1, :count))
SELECT n, CAST(:now AS timestamp) - (((CAST(:apps AS bigint) - n) * :span_ms) / :apps) * interval '1 millisecond' AS ts FROM g;

-- name: synth_source
-- Every number is a source row (the ones past the log's last id stay pending), with a document
-- of doc_bytes characters standing in for the real one (its size is what scans of the table pay).
INSERT INTO {src} ({src_id}, {src_xml}) SELECT n, repeat('x', :doc_bytes) FROM synth_n;
