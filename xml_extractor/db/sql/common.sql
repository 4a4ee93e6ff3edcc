-- Named queries shared by every dialect. A dialect file (sqlite.sql, postgresql.sql, mssql.sql)
-- overrides a query by name, only where the dialect differs.
--
-- Format (procrastinate's sql/queries.sql is the model):
--   -- name: query_name
--   -- One-line description (more comment lines may follow).
--   SELECT ... WHERE x = :param AND y IN (:ids) ...;
-- Values are NAMED parameters (:param), always bound, never formatted into the text: callers pass
-- a mapping, e.g. db.query(db.sql("pending_ids"), {"after_id": 0, ...}). A name may appear more than once; a list value
-- expands to one bound marker per element (IN (:ids)). Placeholders in braces are identifiers
-- only, validated against ^[A-Za-z_][A-Za-z0-9_]*$ and quoted by the dialect before
-- substitution: {src} {src_id} {src_xml} {log} {events} {queue} {progress} {enums} {requests}
-- {commands} {log_history}, and the
-- dialect fragments {now}, {lease_expr} (takes :lease_seconds), {top} / {limit} (row limit, take
-- :limit: TOP (:limit) after SELECT on SQL Server, LIMIT :limit at the end elsewhere).
-- A condition several queries share is written once as "-- fragment: name" (same format, no
-- trailing ;) and used as {name}: {in_range} {in_share} {is_pending} {is_retryable} below.
-- "-- dialects: sqlite, postgresql" under a name limits a common query to those engines.
-- tests/test_sql_dialects.py parses every query of every dialect with sqlglot.
--
-- Id bounds are CAST(... AS BIGINT): selection covers the whole 64-bit range, and psqlODBC would
-- otherwise bind them as the (int4) column's type and fail on -2**63+1.
--
-- An instance's share is the NON-NEGATIVE remainder (((id % :modulus) + :modulus) % :modulus) =
-- :remainder, identical to Python's id % N (see processing/partition.py): SQL's % truncates
-- toward zero, so a negative id would otherwise belong to no instance.

-- fragment: in_range
-- The source row s is within the run's id bounds.
s.{src_id} BETWEEN CAST(:id_lo AS BIGINT) AND CAST(:id_hi AS BIGINT)

-- fragment: in_share
-- The source row s belongs to this instance: the non-negative remainder (see above).
(((s.{src_id} % :modulus) + :modulus) % :modulus) = :remainder

-- fragment: is_pending
-- The source row s is pending: never logged, or with an open reprocess request (its new attempt
-- replaces the old one, see reprocess.py).
(NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id})
 OR EXISTS (SELECT 1 FROM {requests} r WHERE r.app_id = s.{src_id}))

-- fragment: is_retryable
-- The source row s failed, never succeeded, and has attempts left (fewer than :max_attempts).
(EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'failed')
 AND NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id} AND l.status = 'success')
 AND (SELECT MAX(l.attempt) FROM {log} l WHERE l.app_id = s.{src_id}) < :max_attempts)

-- name: pending_ids
-- Keyset page of this instance's pending applications (never OFFSET).
SELECT {top} s.{src_id} FROM {src} s
WHERE s.{src_id} > CAST(:after_id AS BIGINT) AND {in_range} AND {in_share} AND {is_pending}
ORDER BY s.{src_id}
{limit};

-- name: retry_ids
-- Keyset page of failed applications with attempts left.
SELECT {top} s.{src_id} FROM {src} s
WHERE s.{src_id} > CAST(:after_id AS BIGINT) AND {in_range} AND {in_share} AND {is_retryable}
ORDER BY s.{src_id}
{limit};

-- name: count_pending
-- How many pending applications this instance has (the progress bar's total).
SELECT COUNT(*) FROM {src} s WHERE {in_range} AND {in_share} AND {is_pending};

-- name: count_share
-- How many applications this instance's share holds, done or not (the progress bar's total).
SELECT COUNT(*) FROM {src} s WHERE {in_range} AND {in_share};

-- name: count_retry
-- How many failed applications with attempts left this instance has.
SELECT COUNT(*) FROM {src} s WHERE {in_range} AND {in_share} AND {is_retryable};

-- name: last_attempts
-- The highest attempt logged so far for each of a batch's applications.
SELECT app_id, MAX(attempt) FROM {log} WHERE app_id IN (:ids) GROUP BY app_id;

-- name: fetch_documents
-- Whole documents of a batch (SQLite; the server dialects fetch heads, see fetch_heads).
SELECT s.{src_id}, s.{src_xml} FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: logged_status
-- Every logged attempt of one application (was it written after all?).
SELECT app_id, status, attempt FROM {log} WHERE app_id = :app_id ORDER BY attempt;

-- name: logged_in_session
-- Which of these applications this run (session) logged, and with which attempt (a commit whose
-- answer was lost: did it land?).
SELECT app_id, attempt FROM {log} WHERE session_id = :session_id AND app_id IN (:ids);

-- name: session_outcomes
-- The log rows of one run (session) by status: what the run really committed (its end-of-run check),
-- the ones a reprocess replaced meanwhile included (moved to the history, they were committed).
SELECT x.status, COUNT(*) FROM (SELECT status FROM {log} WHERE session_id = :session_id
                                UNION ALL
                                SELECT status FROM {log_history} WHERE session_id = :session_id) x
GROUP BY x.status;

-- name: contact_owners
-- Which other application already owns any of these con_ids.
SELECT {key_col}, app_id FROM {contact_table} WHERE {key_col} IN (:keys) AND app_id <> :app_id;

-- name: disputed_keys
-- Every con_id an application was refused for because another had committed it first (its
-- con_id_collision events), with the application that holds it now (NULL: none does).
SELECT e.raw_value, e.app_id, MIN(e.logged_at), MIN(c.app_id)
FROM {events} e LEFT JOIN {contact_table} c ON c.{key_col} = CAST(e.raw_value AS BIGINT)
WHERE e.event_type = 'con_id_collision' AND e.table_name = :table_name
GROUP BY e.raw_value, e.app_id
ORDER BY MIN(e.logged_at), e.app_id;

-- name: progress_update
-- This worker's counters, inside the batch transaction (the row is this worker's alone: no waits).
UPDATE {progress} SET success = success + :success, failed = failed + :failed, last_at = :now
WHERE session_id = :session_id AND worker_pid = :worker_pid;

-- name: progress_insert
-- This worker's counters row, the first time it commits a batch in this run.
INSERT INTO {progress} (session_id, worker_pid, instance_id, instance_count, started_at, last_at, success, failed)
VALUES (:session_id, :worker_pid, :instance_id, :instance_count, :now, :now, :success, :failed);

-- name: queue_first_chunk
-- The queue's lowest chunk: its width is the queue's width, which every later run adopts.
SELECT {top} chunk_id, lo, hi FROM {queue} ORDER BY chunk_id {limit};

-- name: queue_edge_chunks
-- Chunks cut short at an end of the 64-bit range (their width is checked in Python).
SELECT chunk_id, lo, hi FROM {queue} WHERE lo = CAST(:id_min AS BIGINT) OR hi = CAST(:id_max AS BIGINT);

-- name: queue_other_width
-- Chunks (not at an end of the range) of another width than :span + 1: written by a version that
-- let each run cut the id space at its own --chunk-size.
SELECT COUNT(*) FROM {queue}
WHERE lo > CAST(:id_min AS BIGINT) AND hi < CAST(:id_max AS BIGINT) AND hi - lo <> CAST(:span AS BIGINT);

-- name: queue_drop_other_width
-- Remove the chunks of another width that nobody holds (their work is queued again at the queue's width).
DELETE FROM {queue}
WHERE lo > CAST(:id_min AS BIGINT) AND hi < CAST(:id_max AS BIGINT) AND hi - lo <> CAST(:span AS BIGINT)
  AND (done_at IS NOT NULL OR owner IS NULL OR lease_until < {now});

-- name: queue_drop_chunk
-- Remove one chunk nobody holds (an end chunk of another width, see queue_drop_other_width).
DELETE FROM {queue} WHERE chunk_id = :chunk_id AND (done_at IS NOT NULL OR owner IS NULL OR lease_until < {now});

-- name: queue_reopen
-- A chunk marked done that holds pending work again (the caller found it with pending_ids).
UPDATE {queue} SET done_at = NULL, owner = NULL, lease_until = NULL WHERE chunk_id = :chunk_id AND done_at IS NOT NULL;

-- name: queue_bounds_of
-- The range of a chunk this owner holds (inside its finishing transaction).
SELECT lo, hi FROM {queue} WHERE chunk_id = :chunk_id AND owner = :owner AND done_at IS NULL;

-- name: queue_release_one
-- Give back one chunk that still holds pending work (it is claimed again later).
UPDATE {queue} SET owner = NULL, lease_until = NULL WHERE chunk_id = :chunk_id AND owner = :owner AND done_at IS NULL;

-- name: queue_held_elsewhere
-- Unfinished chunks overlapping the run's range under another owner's live lease.
SELECT COUNT(*) FROM {queue}
WHERE done_at IS NULL AND owner IS NOT NULL AND owner <> :owner AND lease_until >= {now}
  AND hi >= :id_lo AND lo <= :id_hi;

-- name: queue_renew
-- Extend the leases of the chunks this owner holds (all in one statement).
UPDATE {queue} SET lease_until = {lease_expr} WHERE chunk_id IN (:ids) AND owner = :owner AND done_at IS NULL;

-- name: queue_held_by
-- Which of these chunks this owner still holds (the others were taken over).
SELECT chunk_id FROM {queue} WHERE chunk_id IN (:ids) AND owner = :owner AND done_at IS NULL;

-- name: queue_done_among
-- Which of these chunks are marked done (candidates to reopen), with their range.
SELECT chunk_id, lo, hi FROM {queue} WHERE chunk_id IN (:ids) AND done_at IS NOT NULL;

-- name: queue_done
-- Mark a chunk this owner holds as finished.
UPDATE {queue} SET done_at = {now}, owner = :owner WHERE chunk_id = :chunk_id AND owner = :owner;

-- name: queue_release
-- Give back every unfinished chunk this owner holds (clean shutdown).
UPDATE {queue} SET owner = NULL, lease_until = NULL WHERE owner = :owner AND done_at IS NULL;

-- name: bench_corpus
-- The benchmark corpus: documents 1..count in id order (bench.py).
SELECT s.{src_id}, s.{src_xml} FROM {src} s WHERE s.{src_id} BETWEEN 1 AND :count ORDER BY s.{src_id};

-- name: bench_corpus_share
-- One benchmark process's share of the corpus (same partition as a run's instances).
SELECT s.{src_id}, s.{src_xml} FROM {src} s
WHERE s.{src_id} BETWEEN 1 AND :count AND {in_share};

-- name: bench_corpus_size
-- How many corpus documents are already there.
SELECT COUNT(*) FROM {src} s WHERE s.{src_id} BETWEEN 1 AND :count;

-- name: delete_all_rows
-- Empty one table ({table}: a qualified target, log, event, queue or progress table; bench.py).
DELETE FROM {table};

-- name: log_max_id
-- How many log rows there are, about (the identity's high-water mark: one index lookup).
SELECT MAX(log_id) FROM {log};

-- Reprocess (xml_extractor/reprocess.py and BatchWriter._replace_requested): a request per
-- application, consumed by the batch transaction that writes the new attempt.

-- name: reprocess_all
-- Every application with an open reprocess request.
SELECT app_id FROM {requests};

-- name: reprocess_open
-- The open requests one reprocess command recorded (to resume it after a stop).
SELECT app_id FROM {requests} WHERE command = :command;

-- name: reprocess_existing
-- Which of these applications have an open request.
SELECT app_id FROM {requests} WHERE app_id IN (:ids);

-- name: reprocess_insert
-- Record one request.
INSERT INTO {requests} (app_id, requested_at, command) VALUES (:app_id, :now, :command);

-- name: reprocess_command_get
-- A reprocess command's recorded selection on this instance's share: when, how many, completed when.
SELECT requested_at, applications, completed_at FROM {commands}
WHERE command = :command AND instance_id = :instance_id AND instance_count = :instance_count;

-- name: reprocess_command_forget
-- Forget a command's earlier selection on this share (--again records the new one).
DELETE FROM {commands}
WHERE command = :command AND instance_id = :instance_id AND instance_count = :instance_count;

-- name: reprocess_command_record
-- Record a command's selection on this share (in the transaction that records its requests).
INSERT INTO {commands} (command, instance_id, instance_count, requested_at, applications, completed_at)
VALUES (:command, :instance_id, :instance_count, :now, :applications, NULL);

-- name: reprocess_command_complete
-- A command's selection on this share is done (none of its requests is open).
UPDATE {commands} SET completed_at = :now
WHERE command = :command AND instance_id = :instance_id AND instance_count = :instance_count
  AND completed_at IS NULL;

-- name: reprocess_command_extend
-- A complete command whose selection now picks applications it has not redone: these are requested
-- too (its request time stays: what it redid since then stays done).
UPDATE {commands} SET applications = applications + :applications, completed_at = NULL
WHERE command = :command AND instance_id = :instance_id AND instance_count = :instance_count;

-- name: reprocess_replaced_since
-- Which of these applications had a result replaced (redone) at or after :since.
SELECT DISTINCT app_id FROM {log_history} WHERE replaced_at >= :since AND app_id IN (:ids);

-- name: reprocess_logged_since_among
-- Which of these applications have their current result logged at or after :since.
SELECT DISTINCT app_id FROM {log} WHERE logged_at >= :since AND app_id IN (:ids);

-- name: reprocess_consume
-- Consume these applications' requests (inside the transaction of their new attempt).
DELETE FROM {requests} WHERE app_id IN (:ids);

-- name: log_to_history
-- The replaced attempts' log rows, kept (identifiers: {cols} = log_id and the log's columns).
INSERT INTO {log_history} ({cols}, replaced_at) SELECT {cols}, :now FROM {log} WHERE app_id IN (:ids);

-- name: delete_app_rows
-- An application's rows in one table (identifiers: {table}, {app_col}).
DELETE FROM {table} WHERE {app_col} IN (:ids);

-- name: count_app_rows
-- How many rows of these applications one table holds (reprocess --dry-run).
SELECT COUNT(*) FROM {table} WHERE {app_col} IN (:ids);

-- name: contract_versions
-- Applications per contract version that produced their current log rows.
SELECT contract_version, COUNT(DISTINCT app_id) FROM {log} GROUP BY contract_version ORDER BY contract_version;

-- name: source_existing
-- Which of these application ids the source table holds.
SELECT s.{src_id} FROM {src} s WHERE s.{src_id} IN (:ids);

-- name: ops_status_totals
-- status' totals in one statement (one snapshot: an application whose new attempt commits between
-- two counts is neither missed nor counted twice): applications with a success row, finally failed
-- ones, those being redone (an open reprocess request and a current result, which they count as
-- until the new attempt replaces it) and every open request, of applications the source holds.
SELECT (SELECT COUNT(*) FROM {log} WHERE status = 'success'),
       (SELECT COUNT(DISTINCT f.app_id) FROM {log} f WHERE {is_final_failed}),
       (SELECT COUNT(*) FROM {requests} r
        WHERE EXISTS (SELECT 1 FROM {src} s WHERE s.{src_id} = r.app_id)
          AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = r.app_id)),
       (SELECT COUNT(*) FROM {requests} r WHERE EXISTS (SELECT 1 FROM {src} s WHERE s.{src_id} = r.app_id));

-- name: pending_among
-- Which of these applications are pending, whoever's (reprocess in queue mode: which chunks it still needs).
SELECT s.{src_id} FROM {src} s WHERE s.{src_id} IN (:ids) AND {is_pending};

-- name: last_logged_among
-- When each of these applications' current result was logged (reprocess --limit: oldest first).
SELECT app_id, MAX(logged_at) FROM {log} WHERE app_id IN (:ids) GROUP BY app_id;

-- name: logged_among
-- Which of these applications have a log row (load-xml --replace marks those for reprocess).
SELECT DISTINCT app_id FROM {log} WHERE app_id IN (:ids);

-- name: reprocess_orphans
-- Open reprocess requests whose application the source table no longer holds (reprocess closes them).
SELECT r.app_id FROM {requests} r WHERE NOT EXISTS (SELECT 1 FROM {src} s WHERE s.{src_id} = r.app_id);

-- name: profile_id_range
-- The lowest and highest source id (profile spreads its sample over this range).
SELECT MIN(s.{src_id}), MAX(s.{src_id}) FROM {src} s;

-- name: profile_next_id
-- The first source id at or after an evenly spaced point of the id range (profile's keyset probe).
SELECT {top} s.{src_id} FROM {src} s WHERE s.{src_id} >= :point ORDER BY s.{src_id}
{limit};

-- Operator commands (ops.py). Each is linear in the tables it reads, with a plan that uses an
-- index for every per-row probe (tests/test_ops_scale.py checks the plans). The reconcile_*
-- checks return app_ids; db/checks.py counts them and takes a sample.

-- name: ops_count_source
-- Rows in the source table (SQLite counts through ix_app_xml_app_id, not the documents).
SELECT COUNT(*) FROM {src};

-- name: ops_count_success
-- Applications with a success row (an index range of ix_processing_log_status_app).
SELECT COUNT(*) FROM {log} WHERE status = 'success';

-- fragment: is_final_failed
-- The log row f is a failed attempt of an application that never succeeded: the one definition
-- of "failed" that status, failures, reprocess and reconcile share.
f.status = 'failed' AND NOT EXISTS (SELECT 1 FROM {log} s WHERE s.app_id = f.app_id AND s.status = 'success')

-- name: ops_count_final_failed
-- Applications whose attempts all failed.
SELECT COUNT(DISTINCT f.app_id) FROM {log} f WHERE {is_final_failed};

-- name: ops_failures_by_stage
-- Final failures by stage and class; an application being redone counts on its current attempt
-- until the new one replaces it (as status' totals say).
SELECT f.stage, f.error_class, COUNT(DISTINCT f.app_id) FROM {log} f WHERE {is_final_failed}
GROUP BY f.stage, f.error_class ORDER BY COUNT(DISTINCT f.app_id) DESC;

-- name: ops_failed_rows
-- Every failed attempt of a finally failed application, optionally of one stage (NULL: all), with
-- the contract it reached (NULL: failed before a contract set routed it).
SELECT f.app_id, f.attempt, f.stage, f.error_class, f.reason, f.logged_at, f.contract_name FROM {log} f
WHERE {is_final_failed}
  AND (CAST(:stage AS VARCHAR(10)) IS NULL OR f.stage = :stage)
ORDER BY f.app_id, f.attempt;

-- name: ops_sessions
-- Sessions and instances active since a time, from the counters the workers keep in run_progress.
SELECT session_id, instance_id, instance_count, SUM(success) + SUM(failed), SUM(success), SUM(failed),
       MIN(started_at), MAX(last_at)
FROM {progress} WHERE last_at >= :since
GROUP BY session_id, instance_id, instance_count ORDER BY MAX(last_at) DESC;

-- name: ops_results_since
-- Results logged per session since a time, with the first and last of them, in the log (a logged_at
-- index range) and in its history (the attempts a reprocess replaced: results too, as in
-- report_results_since); one row per session and table, ops.py adds them up.
SELECT session_id, COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log} WHERE logged_at >= :since GROUP BY session_id
UNION ALL
SELECT session_id, COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log_history} WHERE logged_at >= :since GROUP BY session_id;

-- name: ops_history_attempts
-- One application's attempts, the ones a reprocess replaced included (replaced_at set).
SELECT attempt, status, stage, error_class, reason, session_id, instance_id, contract_version, logged_at,
       NULL AS replaced_at
FROM {log} WHERE app_id = :app_id
UNION ALL
SELECT attempt, status, stage, error_class, reason, session_id, instance_id, contract_version, logged_at, replaced_at
FROM {log_history} WHERE app_id = :app_id
ORDER BY attempt;

-- name: ops_history_events
-- One application's data-quality events.
SELECT table_name, column_name, event_type, raw_value, reason, locator FROM {events}
WHERE app_id = :app_id ORDER BY event_id;

-- name: ops_in_source
-- Is this application in the source table.
SELECT COUNT(*) FROM {src} WHERE {src_id} = :app_id;

-- name: reconcile_success_without_base
-- Success rows whose application has no base-table row.
SELECT l.app_id FROM {log} l
WHERE l.status = 'success' AND NOT EXISTS (SELECT 1 FROM {base} b WHERE b.{base_key} = l.app_id);

-- name: reconcile_rows_without_success
-- Applications with rows in a target table but no success row.
SELECT DISTINCT x.{app_col} AS app_id FROM {table} x
WHERE NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = x.{app_col} AND l.status = 'success');

-- name: reconcile_multiple_success
-- Applications with more than one success row.
SELECT app_id FROM {log} WHERE status = 'success' GROUP BY app_id HAVING COUNT(*) > 1;

-- name: reconcile_duplicate_attempt
-- More than one final row for one attempt.
SELECT app_id FROM {log} GROUP BY app_id, attempt HAVING COUNT(*) > 1;

-- name: reconcile_log_not_in_source
-- Log rows of applications the source table does not hold. EXCEPT, not NOT EXISTS: a probe per
-- log row into the source table reads the documents' pages (SQLite, 1M rows: 12 s; this: 1 s).
SELECT l.app_id FROM {log} l EXCEPT SELECT s.{src_id} FROM {src} s;

-- name: reprocess_logged_since
-- Applications with a result logged at or after :since (reprocess --since).
SELECT DISTINCT app_id FROM {log} WHERE logged_at >= :since;

-- name: reconcile_final_failed
-- Finally failed applications (also what reprocess --failed redoes).
SELECT DISTINCT f.app_id FROM {log} f WHERE {is_final_failed};

-- name: reconcile_never_attempted
-- Source rows with no log row at all.
SELECT s.{src_id} AS app_id FROM {src} s WHERE NOT EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = s.{src_id});

-- name: reconcile_requested
-- Open reprocess requests of applications the source holds.
SELECT r.app_id FROM {requests} r WHERE EXISTS (SELECT 1 FROM {src} s WHERE s.{src_id} = r.app_id);

-- Schema introspection (db/migrate.py): compare the database with the contract.

-- name: schema_columns
-- A table's columns: name, type, length, precision, scale, nullable (YES/NO); no rows: no table.
-- INFORMATION_SCHEMA's names in upper case: a case-sensitive SQL Server database (*_CS_*, *_BIN*)
-- has them only so; PostgreSQL folds the unquoted names to its lower-case ones.
SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE
FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = :schema AND TABLE_NAME = :table ORDER BY ORDINAL_POSITION;

-- name: schema_primary_key
-- A table's primary key columns in key order (catalog names in upper case, see schema_columns).
SELECT k.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS c
JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE k
  ON k.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND k.TABLE_NAME = c.TABLE_NAME
WHERE c.CONSTRAINT_TYPE = 'PRIMARY KEY' AND c.TABLE_SCHEMA = :schema AND c.TABLE_NAME = :table
ORDER BY k.ORDINAL_POSITION;

-- name: quality_event_groups
-- Data-quality events by table, column and kind (from ix_data_quality_event_kind_app alone).
SELECT table_name, column_name, event_type, COUNT(*), COUNT(DISTINCT app_id), MIN(event_id) FROM {events}
GROUP BY table_name, column_name, event_type ORDER BY COUNT(*) DESC;

-- name: quality_examples
-- The first events of one group (raw value, reason): three equalities on ix_data_quality_event_kind_app
-- (an OR for the NULL column would use only the first: 20x slower at a million events).
SELECT {top} raw_value, reason FROM {events}
WHERE table_name = :table_name AND column_name = :column_name AND event_type = :event_type AND event_id >= :first_id
ORDER BY event_id {limit};

-- name: quality_examples_no_column
-- The same for events that name no column.
SELECT {top} raw_value, reason FROM {events}
WHERE table_name = :table_name AND column_name IS NULL AND event_type = :event_type AND event_id >= :first_id
ORDER BY event_id {limit};

-- name: quality_default_rows
-- Rows, and rows holding the column's declared default, of a whole table.
SELECT COUNT(*), SUM(CASE WHEN {col} = :value THEN 1 ELSE 0 END) FROM {table};

-- name: quality_default_rows_sample
-- The same over the first :limit rows the table yields (a bounded read at any size).
SELECT COUNT(*), SUM(CASE WHEN q.{col} = :value THEN 1 ELSE 0 END) FROM (SELECT {top} {col} FROM {table} {limit}) q;

-- name: quality_sparse
-- Rows, and rows holding at most one data value ({filled}: the sum of one CASE per data column).
SELECT COUNT(*), SUM(CASE WHEN ({filled}) <= 1 THEN 1 ELSE 0 END) FROM {table};

-- name: quality_sparse_sample
-- The same over the first :limit rows the table yields.
SELECT COUNT(*), SUM(CASE WHEN ({filled}) <= 1 THEN 1 ELSE 0 END) FROM (SELECT {top} {cols} FROM {table} {limit}) q;

-- name: ops_count_rows
-- Rows of one table.
SELECT COUNT(*) FROM {table};

-- name: log_contract_version_list
-- The contract versions in the log, by a loose scan of ix_processing_log_contract_version (one
-- index probe per version, not a read of every log row).
WITH RECURSIVE v(cv) AS (
    SELECT MIN(contract_version) FROM {log}
    UNION ALL
    SELECT (SELECT MIN(l.contract_version) FROM {log} l WHERE l.contract_version > v.cv) FROM v WHERE v.cv IS NOT NULL)
SELECT cv FROM v WHERE cv IS NOT NULL;

-- name: source_insert_new
-- One document into the source table unless its id is already there (a concurrent load won).
INSERT INTO {src} ({src_id}, {src_xml}) SELECT :app_id, :xml WHERE NOT EXISTS (SELECT 1 FROM {src} s WHERE s.{src_id} = :app_id);

-- name: source_delete
-- Remove these documents (load-xml --replace).
DELETE FROM {src} WHERE {src_id} IN (:ids);

-- name: enum_ids
-- The enum ids already seeded (init-db adds the missing ones).
SELECT enum_id FROM {enums};

-- name: ops_by_contract
-- Applications per contract of a contract set: successes by the contract that mapped them, final
-- failures by the contract they reached ('(not routed)': failed before routing, as
-- failures/reconcile say); an application being redone counts on its current attempt (as status'
-- totals count it).
SELECT COALESCE(l.contract_name, '(not routed)'), l.status, COUNT(DISTINCT l.app_id) FROM {log} l
WHERE (l.status = 'success' OR NOT EXISTS (SELECT 1 FROM {log} s WHERE s.app_id = l.app_id AND s.status = 'success'))
GROUP BY COALESCE(l.contract_name, '(not routed)'), l.status ORDER BY 1, 2;

-- name: launch_progress
-- Per instance of a launch: what its workers committed since the launch started (run_progress).
SELECT instance_id, SUM(success), SUM(failed), MIN(started_at), MAX(last_at) FROM {progress}
WHERE started_at >= :since AND instance_count = :instance_count GROUP BY instance_id;

-- Per contract: the operator commands of a contract set split by processing_log.
-- contract_name (NULL: the application never reached a contract: it failed before routing).

-- name: reconcile_by_contract
-- Applications done per contract and outcome: success rows, and the last failed attempt of each
-- finally failed application (one row per application by ux_processing_log_app_attempt); open
-- reprocess requests excluded (they are pending). Two branches, not an OR: PostgreSQL turns each
-- NOT EXISTS into an anti-join only outside an OR (with it: a subplan over the whole log).
SELECT f.contract_name, f.status, COUNT(*) FROM {log} f
WHERE f.status = 'success' AND NOT EXISTS (SELECT 1 FROM {requests} r WHERE r.app_id = f.app_id)
GROUP BY f.contract_name, f.status
UNION ALL
SELECT f.contract_name, f.status, COUNT(*) FROM {log} f
WHERE {is_final_failed} AND NOT EXISTS (SELECT 1 FROM {log} n WHERE n.app_id = f.app_id AND n.attempt > f.attempt)
  AND NOT EXISTS (SELECT 1 FROM {requests} r WHERE r.app_id = f.app_id)
GROUP BY f.contract_name, f.status;

-- name: quality_event_groups_by_contract
-- Data-quality events by the contract that produced them (the application's routed contract in
-- the log: one probe of the (app_id, attempt) index per event; a routed application that failed,
-- e.g. on a key collision, counts under its contract as in failures), table, column and kind.
SELECT x.contract_name, x.table_name, x.column_name, x.event_type, COUNT(*), COUNT(DISTINCT x.app_id), MIN(x.event_id)
FROM (SELECT (SELECT MAX(l.contract_name) FROM {log} l WHERE l.app_id = e.app_id) AS contract_name,
             e.table_name, e.column_name, e.event_type, e.app_id, e.event_id FROM {events} e) x
GROUP BY x.contract_name, x.table_name, x.column_name, x.event_type ORDER BY COUNT(*) DESC;

-- name: quality_examples_of_contract
-- quality_examples of the applications one contract of a set produced (a log probe per event read).
SELECT {top} e.raw_value, e.reason FROM {events} e
WHERE e.table_name = :table_name AND e.column_name = :column_name AND e.event_type = :event_type AND e.event_id >= :first_id
  AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = e.app_id AND l.contract_name = :contract_name)
ORDER BY e.event_id {limit};

-- name: quality_examples_no_column_of_contract
-- The same for events that name no column.
SELECT {top} e.raw_value, e.reason FROM {events} e
WHERE e.table_name = :table_name AND e.column_name IS NULL AND e.event_type = :event_type AND e.event_id >= :first_id
  AND EXISTS (SELECT 1 FROM {log} l WHERE l.app_id = e.app_id AND l.contract_name = :contract_name)
ORDER BY e.event_id {limit};

-- name: enum_rows
-- Every enum code the database holds, with its id (init-db compares them with the contract's ids).
SELECT enum_id, type, value FROM {enums};
