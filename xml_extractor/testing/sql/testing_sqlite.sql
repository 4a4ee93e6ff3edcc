-- synth_numbers and synth_source for sqlite (see testing_common.sql).

-- name: synth_numbers
-- 1..count with a timestamp spread evenly over span_ms ending at now.
CREATE TEMP TABLE synth_n AS
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
SELECT n, strftime('%Y-%m-%d %H:%M:%f', :now, '-' || ((((:apps - n) * :span_ms) / :apps) / 1000.0) || ' seconds') AS ts FROM g;

-- name: synth_source
-- Every number is a source row (the ones past the log's last id stay pending), with a document
-- of doc_bytes characters standing in for the real one (its size is what scans of the table pay).
INSERT INTO {src} ({src_id}, {src_xml}) SELECT n, printf('%.*c', :doc_bytes, 'x') FROM synth_n;
