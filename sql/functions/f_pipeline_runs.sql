-- Runs created in [since, until), one row each with its latest state: v_pipeline_runs over a
-- time window. The window reaches event_time, the partition column of the events table, so
-- BigQuery reads only the window's partitions (plus one day after it: a run ends at most a day
-- after it was created, the longest pipeline timeout).
SELECT
  org_slug,
  run_id,
  pipeline_id,
  status,
  trigger,
  triggered_by,
  error_class,
  error_summary,
  created_at,
  started_at,
  IF(status IN ('QUEUED', 'PENDING', 'RUNNING'), NULL, updated_at) AS ended_at,
  IF(status IN ('QUEUED', 'PENDING', 'RUNNING'), NULL,
     TIMESTAMP_DIFF(updated_at, COALESCE(started_at, created_at), MILLISECOND)) AS duration_ms,
  TIMESTAMP_DIFF(admitted_at, queued_at, MILLISECOND) / 1000 AS queued_secs,
  rerun_of,
  schedule_id,
  logical_time,
  backfill_id,
  bytes_billed
FROM (
  SELECT
    org_slug,
    run_id,
    pipeline_id,
    status,
    error_class,
    error_summary,
    bytes_billed,
    MAX(trigger) OVER w AS trigger,
    MAX(triggered_by) OVER w AS triggered_by,
    event_time AS updated_at,
    MIN(IF(status IN ('QUEUED', 'PENDING', 'REFUSED'), event_time, NULL)) OVER w AS created_at,
    MIN(IF(status = 'QUEUED', event_time, NULL)) OVER w AS queued_at,
    MIN(IF(status = 'PENDING', event_time, NULL)) OVER w AS admitted_at,
    MAX(rerun_of) OVER w AS rerun_of,
    MAX(schedule_id) OVER w AS schedule_id,
    MAX(logical_time) OVER w AS logical_time,
    MAX(backfill_id) OVER w AS backfill_id,
    MIN(IF(status = 'RUNNING', event_time, NULL)) OVER w AS started_at
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE event_time >= since
    AND event_time < TIMESTAMP_ADD(until, INTERVAL 1 DAY)
  WINDOW w AS (PARTITION BY run_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY event_seq DESC, event_time DESC) = 1
)
WHERE created_at >= since
  AND created_at < until
