-- Step attempts of one run, in order: one row per (step, attempt), its end when written, else
-- its RUNNING row (duplicates from retried inserts collapse). An attempt still RUNNING in a run
-- that has ended (its instance died) reads INTERRUPTED. SKIPPED rows (attempt 0) are steps that
-- never started.
WITH ended AS (
  SELECT COUNT(*) > 0 AS run_ended
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug = @org_slug
    AND run_id = @run_id
    AND status NOT IN ('QUEUED', 'PENDING', 'RUNNING')
    AND event_time >= TIMESTAMP_SUB(@now, INTERVAL 31 DAY)
),
attempts AS (
  SELECT
    pipeline_id,
    step_id,
    attempt,
    status,
    started_at,
    ended_at,
    duration_ms,
    rows_affected,
    bytes_processed,
    bytes_billed,
    slot_ms,
    error_summary
  FROM `__META_DATASET__.step_logs`
  WHERE org_slug = @org_slug
    AND run_id = @run_id
    AND started_at >= TIMESTAMP_SUB(@now, INTERVAL 31 DAY)
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY step_id, attempt
    ORDER BY IF(status = 'RUNNING', 1, 0), ended_at DESC
  ) = 1
)
SELECT
  a.pipeline_id,
  a.step_id,
  a.attempt,
  IF(a.status = 'RUNNING' AND e.run_ended, 'INTERRUPTED', a.status) AS status,
  UNIX_MICROS(a.started_at) AS started_at_micros,
  UNIX_MICROS(a.ended_at) AS ended_at_micros,
  a.duration_ms,
  a.rows_affected,
  a.bytes_processed,
  a.bytes_billed,
  a.slot_ms,
  IF(a.status = 'RUNNING' AND e.run_ended, 'the run ended while this attempt ran',
     a.error_summary) AS error_summary
FROM attempts AS a
CROSS JOIN ended AS e
ORDER BY a.started_at, a.step_id, a.attempt
LIMIT 1000
