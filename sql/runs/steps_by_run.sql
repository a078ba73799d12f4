-- Step attempts of one run, in order; duplicate rows from retried inserts collapse by log_id.
SELECT
  step_id,
  attempt,
  status,
  UNIX_MICROS(started_at) AS started_at_micros,
  UNIX_MICROS(ended_at) AS ended_at_micros,
  duration_ms,
  rows_affected,
  bytes_processed,
  error_summary
FROM `__META_DATASET__.step_logs`
WHERE org_slug = @org_slug
  AND run_id = @run_id
  AND started_at >= TIMESTAMP_SUB(@now, INTERVAL 31 DAY)
QUALIFY ROW_NUMBER() OVER (PARTITION BY log_id ORDER BY started_at) = 1
ORDER BY started_at, step_id, attempt
LIMIT 1000
