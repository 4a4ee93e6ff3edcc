-- Named queries of `xml-extractor report` (xml_extractor/report.py), same format as common.sql,
-- with one more placeholder: {minute}, the minute of x.logged_at as 'YYYY-MM-DD HH:MM' text, a
-- fragment of report_<dialect>.sql. Each query reads a table once (the log, its history, the
-- events, run_progress) and groups it: linear in the rows, no probe per row but the events'.
-- A "result" is one committed attempt: a log row, or a history row (the attempt a reprocess
-- replaced, kept with its original logged_at, so the past stays in the curves).

-- name: report_results_per_minute
-- Results per minute, instance and status, current (0) and replaced by a reprocess (1).
SELECT {minute} AS minute_of, x.instance_id, x.status, 0 AS replaced, COUNT(*) FROM {log} x
GROUP BY {minute}, x.instance_id, x.status
UNION ALL
SELECT {minute} AS minute_of, x.instance_id, x.status, 1 AS replaced, COUNT(*) FROM {log_history} x
GROUP BY {minute}, x.instance_id, x.status;

-- name: report_failures_per_minute
-- Failed attempts per minute, stage and error class, the replaced ones included.
SELECT {minute} AS minute_of, x.stage, x.error_class, COUNT(*) FROM {log} x WHERE x.status = 'failed'
GROUP BY {minute}, x.stage, x.error_class
UNION ALL
SELECT {minute} AS minute_of, x.stage, x.error_class, COUNT(*) FROM {log_history} x WHERE x.status = 'failed'
GROUP BY {minute}, x.stage, x.error_class;

-- name: report_result_span
-- Results, the first and the last of them, in the log and in its history (one row each).
SELECT COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log}
UNION ALL
SELECT COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log_history};

-- name: report_results_since
-- Results logged at or after :since (the rate's window), the first and the last of them (a
-- range of ix_processing_log_logged_at and of ix_processing_log_history_logged_at).
SELECT COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log} WHERE logged_at >= :since
UNION ALL
SELECT COUNT(*), MIN(logged_at), MAX(logged_at) FROM {log_history} WHERE logged_at >= :since;

-- name: report_events_by_kind
-- Data-quality events by the contract that produced them (the application's contract in the log,
-- one probe of the (app_id, attempt) index per event; NULL: a single contract, or not routed),
-- table and kind, with the applications they touch.
SELECT x.contract_name, x.table_name, x.event_type, COUNT(*), COUNT(DISTINCT x.app_id)
FROM (SELECT (SELECT MAX(l.contract_name) FROM {log} l WHERE l.app_id = e.app_id) AS contract_name,
             e.table_name, e.event_type, e.app_id FROM {events} e) x
GROUP BY x.contract_name, x.table_name, x.event_type;

-- name: report_events_by_kind_one_contract
-- The same for a single contract (every event is its): table and kind from
-- ix_data_quality_event_kind_app alone, no probe of the log.
SELECT NULL, e.table_name, e.event_type, COUNT(*), COUNT(DISTINCT e.app_id) FROM {events} e
GROUP BY e.table_name, e.event_type;

-- name: report_runs
-- Runs (sessions) per instance from the counters the workers keep: workers, first start, last
-- commit, successes and failures.
SELECT session_id, instance_id, instance_count, COUNT(*), MIN(started_at), MAX(last_at), SUM(success), SUM(failed)
FROM {progress} GROUP BY session_id, instance_id, instance_count;
