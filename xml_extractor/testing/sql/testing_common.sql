-- The test harness's named queries (xml_extractor/testing/queries.py), in the format of
-- xml_extractor/db/sql/common.sql.

-- Synthetic operator-scale data (xml_extractor/testing/synthetic.py, for scripts/ops_bench.py and
-- the tests): a million applications' log, rows and events built by INSERT ... SELECT, without
-- parsing a document. synth_numbers (per dialect) makes the temp table synth_n(n, ts); the
-- statements below fill the real tables from it.

-- name: synth_log
-- dialects: sqlite, postgresql
-- Attempt 1 of applications 1..apps: every 50th failed at parse; 30 sessions of 3 instances.
INSERT INTO {log} (app_id, status, stage, error_class, reason, attempt, instance_id, instance_count, session_id,
                   contract_version, parse_ms, map_ms, insert_ms, worker_pid, logged_at)
SELECT n, CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'success' END, CASE WHEN n % 50 = 0 THEN 'parse' END,
       CASE WHEN n % 50 = 0 THEN 'XMLSyntaxError' END,
       CASE WHEN n % 50 = 0 THEN 'malformed XML: line ' || (n % 97) END, 1, n % 3, 3,
       'session-' || ((n - 1) * 30 / :apps), :contract_version, 0.2, 0.5, 0.3, 1000 + n % 6, ts
FROM synth_n WHERE n <= :apps;

-- name: synth_log_retry
-- dialects: sqlite, postgresql
-- Attempt 2 (a success) of every 100th application: half the failures were retried.
INSERT INTO {log} (app_id, status, stage, error_class, reason, attempt, instance_id, instance_count, session_id,
                   contract_version, parse_ms, map_ms, insert_ms, worker_pid, logged_at)
SELECT n, 'success', NULL, NULL, NULL, 2, n % 3, 3, 'session-' || ((n - 1) * 30 / :apps), :contract_version,
       0.2, 0.5, 0.3, 1000 + n % 6, ts
FROM synth_n WHERE n <= :apps AND n % 100 = 0;

-- name: synth_base
-- dialects: sqlite, postgresql
-- One base row per successful application.
INSERT INTO {base} (app_id, receive_date, app_type_enum, campaign_num)
SELECT n, :receive_date, 1 + n % 3, 'C' || (n % 1000) FROM synth_n WHERE n <= :apps AND (n % 50 <> 0 OR n % 100 = 0);

-- name: synth_one_to_one
-- dialects: sqlite, postgresql
-- A 1:1 child row per successful application.
INSERT INTO {child} (app_id) SELECT n FROM synth_n WHERE n <= :apps AND (n % 50 <> 0 OR n % 100 = 0);

-- name: synth_contact
-- dialects: sqlite, postgresql
-- One contact per successful application (con_id = app_id).
INSERT INTO {contact} (con_id, app_id, first_name, last_name)
SELECT n, n, 'First' || (n % 500), 'Last' || (n % 900) FROM synth_n WHERE n <= :apps AND (n % 50 <> 0 OR n % 100 = 0);

-- name: synth_address
-- dialects: sqlite, postgresql
-- One address per contact.
INSERT INTO {address} (con_id, app_id, address_type_enum, city)
SELECT n, n, 1, 'City' || (n % 300) FROM synth_n WHERE n <= :apps AND (n % 50 <> 0 OR n % 100 = 0);

-- name: synth_scores
-- dialects: sqlite, postgresql
-- Two scores per successful application.
INSERT INTO {scores} (app_id, score_identifier, score)
SELECT n, 'FICO', 300 + n % 550 FROM synth_n WHERE n <= :apps AND (n % 50 <> 0 OR n % 100 = 0)
UNION ALL
SELECT n, 'BEACON', 300 + n % 500 FROM synth_n WHERE n <= :apps AND (n % 50 <> 0 OR n % 100 = 0);

-- name: synth_events
-- dialects: sqlite, postgresql
-- A data-quality event for every third application, 20 kinds.
INSERT INTO {events} (app_id, table_name, column_name, event_type, raw_value, reason, locator, session_id, logged_at)
SELECT n, 'app_contact_base',
       CASE n % 4 WHEN 0 THEN 'ssn' WHEN 1 THEN 'birth_date' WHEN 2 THEN 'email' ELSE 'first_name' END,
       CASE n % 5 WHEN 0 THEN 'invalid' WHEN 1 THEN 'rounded' WHEN 2 THEN 'defaulted' WHEN 3 THEN 'truncated' ELSE 'dropped' END,
       'raw' || n, 'synthetic event', NULL, 'session-' || ((n - 1) * 30 / :apps), ts
FROM synth_n WHERE n <= :apps AND n % 3 = 0;

-- name: synth_progress
-- dialects: sqlite, postgresql
-- run_progress as the workers would have kept it.
INSERT INTO {progress} (session_id, worker_pid, instance_id, instance_count, started_at, last_at, success, failed)
SELECT session_id, worker_pid, MIN(instance_id), 3, MIN(logged_at), MAX(logged_at),
       SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)
FROM {log} GROUP BY session_id, worker_pid;

-- name: synth_drop
-- dialects: sqlite, postgresql
-- The numbers are not needed any more.
DROP TABLE synth_n;

-- Checks of scripts/soak.py and scripts/ops_bench.py, and reads of the tests.

-- name: soak_source_ids
-- Every source id (scripts/soak.py's accounting: small databases only).
SELECT s.{src_id} FROM {src} s;

-- name: soak_log_rows
-- Every log row's application, status and attempt (scripts/soak.py).
SELECT app_id, status, attempt FROM {log};

-- name: soak_table_app_ids
-- The applications a target table holds rows of ({table}, its app id column {app_col}; soak.py).
SELECT DISTINCT x.{app_col} FROM {table} x;

-- name: soak_stale_events
-- Events whose session is not the session of any log row of their application (left over by a
-- replaced attempt; scripts/soak.py).
SELECT COUNT(*) FROM {events} e
WHERE NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = e.app_id AND l.session_id = e.session_id);

-- name: ops_count_log_attempt_one
-- Applications that have a first attempt (scripts/ops_bench.py: is the database already built?).
SELECT COUNT(*) FROM {log} WHERE attempt = 1;

-- name: test_campaign_columns
-- tests/test_schema_evolution.py: the original and the added column of every base row.
SELECT app_id, campaign_num, campaign_code FROM {base};
