-- The current state of runs and their step attempts, in one query: every run watched on an
-- instance, across orgs (the live read model's one read per poll), or one run (a read of its
-- own). For each (org, run) of the run keys ("org_slug/run_id"): one row of kind 'run', its
-- latest event (duplicates from retried inserts collapse) with the times of its QUEUED,
-- PENDING and RUNNING events and what its PENDING event recorded (trigger, parameters); then
-- rows of kind 'step', its step attempts in order, at most 1000: one row per (step, attempt),
-- its end when written, else its RUNNING row. An attempt still RUNNING in a run that has ended
-- (its instance died) reads INTERRUPTED; SKIPPED rows (attempt 0) are steps that never started.
-- Columns a kind does not use are NULL. Only partitions since the given start (the earliest
-- creation among the runs, never more than 31 days back) are read, and only the blocks of the
-- runs' orgs (both tables are clustered by org).
WITH events AS (
  SELECT
    org_slug, run_id, pipeline_id, status, trigger, triggered_by, parameters, rerun_of,
    schedule_id, logical_time, backfill_id, error_class, error_summary, bytes_billed,
    event_time, event_seq
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug IN UNNEST(@org_slugs)
    AND CONCAT(org_slug, '/', run_id) IN UNNEST(@run_keys)
    AND event_time >= @since
),
runs AS (
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
    bytes_billed,
    UNIX_MICROS(event_time) AS updated_at_micros,
    UNIX_MICROS(MIN(IF(status IN ('QUEUED', 'PENDING', 'REFUSED'), event_time, NULL)) OVER w) AS created_at_micros,
    UNIX_MICROS(MIN(IF(status = 'QUEUED', event_time, NULL)) OVER w) AS queued_at_micros,
    UNIX_MICROS(MIN(IF(status = 'PENDING', event_time, NULL)) OVER w) AS admitted_at_micros,
    UNIX_MICROS(MIN(IF(status = 'RUNNING', event_time, NULL)) OVER w) AS started_at_micros
  FROM events
  WINDOW w AS (PARTITION BY org_slug, run_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY org_slug, run_id ORDER BY event_seq DESC, event_time DESC) = 1
),
ended AS (
  SELECT org_slug, run_id, COUNT(*) > 0 AS run_ended
  FROM events
  WHERE status NOT IN ('QUEUED', 'PENDING', 'RUNNING')
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
  WHERE org_slug IN UNNEST(@org_slugs)
    AND CONCAT(org_slug, '/', run_id) IN UNNEST(@run_keys)
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
),
both_kinds AS (
  SELECT
    'run' AS kind, org_slug, run_id, pipeline_id, status, error_summary, bytes_billed,
    started_at_micros, trigger, triggered_by, parameters, rerun_of, schedule_id,
    logical_time_micros, backfill_id, error_class, updated_at_micros, created_at_micros,
    queued_at_micros, admitted_at_micros,
    CAST(NULL AS STRING) AS step_id, CAST(NULL AS INT64) AS attempt,
    CAST(NULL AS INT64) AS ended_at_micros, CAST(NULL AS INT64) AS duration_ms,
    CAST(NULL AS INT64) AS rows_affected, CAST(NULL AS INT64) AS bytes_processed,
    CAST(NULL AS INT64) AS slot_ms
  FROM runs
  UNION ALL
  SELECT
    'step' AS kind, org_slug, run_id, pipeline_id, status, error_summary, bytes_billed,
    started_at_micros, CAST(NULL AS STRING) AS trigger, CAST(NULL AS STRING) AS triggered_by,
    CAST(NULL AS STRING) AS parameters, CAST(NULL AS STRING) AS rerun_of,
    CAST(NULL AS STRING) AS schedule_id, CAST(NULL AS INT64) AS logical_time_micros,
    CAST(NULL AS STRING) AS backfill_id, CAST(NULL AS STRING) AS error_class,
    CAST(NULL AS INT64) AS updated_at_micros, CAST(NULL AS INT64) AS created_at_micros,
    CAST(NULL AS INT64) AS queued_at_micros, CAST(NULL AS INT64) AS admitted_at_micros,
    step_id, attempt, ended_at_micros, duration_ms, rows_affected, bytes_processed, slot_ms
  FROM numbered
  WHERE n <= 1000
)
-- Runs first: a cut answer loses step attempts, never a run's state.
SELECT *
FROM both_kinds
ORDER BY kind, org_slug, run_id, started_at_micros, step_id, attempt
LIMIT @max_rows
