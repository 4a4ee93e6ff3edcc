-- report's SQLite pieces (see report_common.sql).

-- fragment: minute
-- The minute of x.logged_at: the stored text 'YYYY-MM-DD HH:MM:SS.mmm' cut after the minutes.
substr(x.logged_at, 1, 16)
