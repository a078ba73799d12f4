-- The definitions of runs admitted from a queue: each run's QUEUED event (trigger, parameters,
-- links), and whether the run already has a later event (it was cancelled or refused while
-- queued, or it has started). Runs of the last 31 days (partition filter).
WITH events AS (
  SELECT
    run_id,
    org_slug,
    pipeline_id,
    status,
    trigger,
    triggered_by,
    parameters,
    idempotency_key,
    rerun_of,
    schedule_id,
    logical_time,
    backfill_id,
    SUM(IF(status != 'QUEUED', 1, 0)) OVER (PARTITION BY run_id) AS later_events
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE run_id IN UNNEST(@run_ids)
    AND event_time >= TIMESTAMP_SUB(@now, INTERVAL 31 DAY)
)
SELECT
  run_id,
  org_slug,
  pipeline_id,
  trigger,
  triggered_by,
  parameters,
  idempotency_key,
  rerun_of,
  schedule_id,
  UNIX_MICROS(logical_time) AS logical_time_micros,
  backfill_id,
  later_events > 0 AS moved_on
FROM events
WHERE status = 'QUEUED'
QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY run_id) = 1
LIMIT @limit
