-- report's SQL Server pieces (see report_common.sql).

-- fragment: minute
-- The minute of x.logged_at as 'YYYY-MM-DD HH:MM' text (style 120 is 'yyyy-mm-dd hh:mi:ss').
CONVERT(CHAR(16), x.logged_at, 120)
