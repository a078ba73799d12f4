-- The step attempts of several runs at once (the live read model's one read per poll, for
-- every watched run that has left the queue): for each (org, run) of the run keys
-- ("org_slug/run_id"), what sql/runs/steps_by_run.sql answers for it, at most 1000 attempts a
-- run. Only partitions since the given start (the earliest creation among the runs, never more than 31
-- days back) are read.
WITH ended AS (
  SELECT org_slug, run_id, COUNT(*) > 0 AS run_ended
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE CONCAT(org_slug, '/', run_id) IN UNNEST(@run_keys)
    AND status NOT IN ('QUEUED', 'PENDING', 'RUNNING')
    AND event_time >= @since
  GROUP BY org_slug, run_id
),
attempts AS (
  SELECT
    org_slug,
    run_id,
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
  WHERE CONCAT(org_slug, '/', run_id) IN UNNEST(@run_keys)
    AND started_at >= @since
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY org_slug, run_id, step_id, attempt
    ORDER BY IF(status = 'RUNNING', 1, 0), ended_at DESC
  ) = 1
),
numbered AS (
  SELECT
    a.org_slug,
    a.run_id,
    a.pipeline_id,
    a.step_id,
    a.attempt,
    IF(a.status = 'RUNNING' AND IFNULL(e.run_ended, FALSE), 'INTERRUPTED', a.status) AS status,
    UNIX_MICROS(a.started_at) AS started_at_micros,
    UNIX_MICROS(a.ended_at) AS ended_at_micros,
    a.duration_ms,
    a.rows_affected,
    a.bytes_processed,
    a.bytes_billed,
    a.slot_ms,
    IF(a.status = 'RUNNING' AND IFNULL(e.run_ended, FALSE), 'the run ended while this attempt ran',
       a.error_summary) AS error_summary,
    ROW_NUMBER() OVER (
      PARTITION BY a.org_slug, a.run_id ORDER BY a.started_at, a.step_id, a.attempt) AS n
  FROM attempts AS a
  LEFT JOIN ended AS e ON e.org_slug = a.org_slug AND e.run_id = a.run_id
)
SELECT
  org_slug, run_id, pipeline_id, step_id, attempt, status, started_at_micros, ended_at_micros,
  duration_ms, rows_affected, bytes_processed, bytes_billed, slot_ms, error_summary
FROM numbered
WHERE n <= 1000
ORDER BY org_slug, run_id, n
LIMIT @max_rows
