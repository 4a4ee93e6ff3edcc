-- report's PostgreSQL pieces (see report_common.sql).

-- fragment: minute
-- The minute of x.logged_at as 'YYYY-MM-DD HH:MM' text.
to_char(x.logged_at, 'YYYY-MM-DD HH24:MI')
