-- Per pipeline and period (a UTC day or hour, by period_micros: 86400000000 or 3600000000),
-- over one org's runs created in [since, until): runs, succeeded, failed, duration percentiles
-- of finished runs and the bytes the ended runs billed (for the web view's charts). The event
-- filter reaches the partition column; a run is counted in the period it was created in, named
-- by the period's number since the Unix epoch (period_index: its start is period_index times
-- period_micros).
WITH latest AS (
  SELECT
    run_id,
    pipeline_id,
    status,
    bytes_billed,
    UNIX_MICROS(event_time) AS updated_at_micros,
    UNIX_MICROS(MIN(IF(status = 'PENDING', event_time, NULL)) OVER w) AS created_at_micros,
    UNIX_MICROS(MIN(IF(status = 'RUNNING', event_time, NULL)) OVER w) AS started_at_micros
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug = @org_slug
    AND event_time >= @since
    AND event_time < TIMESTAMP_ADD(@until, INTERVAL 1 DAY)
  WINDOW w AS (PARTITION BY run_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY event_seq DESC, event_time DESC) = 1
),
runs AS (
  SELECT
    pipeline_id,
    DIV(created_at_micros, @period_micros) AS period_index,
    status,
    bytes_billed,
    IF(status IN ('QUEUED', 'PENDING', 'RUNNING'), NULL,
       (updated_at_micros - COALESCE(started_at_micros, created_at_micros)) / 1000) AS duration_ms
  FROM latest
  WHERE created_at_micros >= UNIX_MICROS(@since)
    AND created_at_micros < UNIX_MICROS(@until)
),
with_percentiles AS (
  SELECT
    pipeline_id,
    period_index,
    status,
    bytes_billed,
    PERCENTILE_CONT(duration_ms, 0.5) OVER (PARTITION BY pipeline_id, period_index) AS p50_ms,
    PERCENTILE_CONT(duration_ms, 0.95) OVER (PARTITION BY pipeline_id, period_index) AS p95_ms
  FROM runs
)
SELECT
  pipeline_id,
  period_index,
  COUNT(*) AS runs,
  COUNTIF(status = 'SUCCEEDED') AS succeeded,
  COUNTIF(status IN ('FAILED', 'TIMED_OUT', 'ORPHANED')) AS failed,
  COUNTIF(status = 'CANCELLED') AS cancelled,
  ANY_VALUE(p50_ms) AS p50_ms,
  ANY_VALUE(p95_ms) AS p95_ms,
  SUM(IFNULL(bytes_billed, 0)) AS bytes_billed
FROM with_percentiles
GROUP BY pipeline_id, period_index
ORDER BY pipeline_id, period_index
LIMIT 1000
