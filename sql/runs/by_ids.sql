-- The current state of several runs at once (the live read model's one read per poll, for
-- every run watched on the instance, across orgs): for each (org, run) of the run keys
-- ("org_slug/run_id"), what sql/runs/by_id.sql answers for it. Only partitions since the given start
-- (the earliest creation among the runs, never more than 31 days back) are read.
SELECT
  org_slug,
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
WHERE CONCAT(org_slug, '/', run_id) IN UNNEST(@run_keys)
  AND event_time >= @since
WINDOW w AS (PARTITION BY org_slug, run_id)
QUALIFY ROW_NUMBER() OVER (PARTITION BY org_slug, run_id ORDER BY event_seq DESC, event_time DESC) = 1
LIMIT @max_runs
