-- One run's current state: its latest event (duplicates from retried inserts collapse), with
-- the times of its QUEUED, PENDING and RUNNING events and what its PENDING event recorded (trigger,
-- parameters). Runs of the last 31 days (partition filter).
SELECT
  run_id,
  pipeline_id,
  status,
  MAX(trigger) OVER w AS trigger,
  MAX(triggered_by) OVER w AS triggered_by,
  MAX(parameters) OVER w AS parameters,
  MAX(rerun_of) OVER w AS rerun_of,
  MAX(schedule_id) OVER w AS schedule_id,
  UNIX_MICROS(MAX(logical_time) OVER w) AS logical_time_micros,
  MAX(backfill_id) OVER w AS backfill_id,
  error_class,
  error_summary,
  runs_today_at_admission,
  runs_month_at_admission,
  bytes_billed,
  UNIX_MICROS(event_time) AS updated_at_micros,
  UNIX_MICROS(MIN(IF(status IN ('QUEUED', 'PENDING', 'REFUSED'), event_time, NULL)) OVER w) AS created_at_micros,
  UNIX_MICROS(MIN(IF(status = 'QUEUED', event_time, NULL)) OVER w) AS queued_at_micros,
  UNIX_MICROS(MIN(IF(status = 'PENDING', event_time, NULL)) OVER w) AS admitted_at_micros,
  UNIX_MICROS(MIN(IF(status = 'RUNNING', event_time, NULL)) OVER w) AS started_at_micros
FROM `__META_DATASET__.pipeline_run_events`
WHERE org_slug = @org_slug
  AND run_id = @run_id
  AND event_time >= TIMESTAMP_SUB(@now, INTERVAL 31 DAY)
WINDOW w AS (PARTITION BY run_id)
QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY event_seq DESC, event_time DESC) = 1
LIMIT 1
