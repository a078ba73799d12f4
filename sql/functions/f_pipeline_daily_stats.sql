-- Per org, pipeline and day of creation in [from_day, to_day]: runs, outcomes, duration
-- percentiles and billed bytes (v_pipeline_daily_stats over a window of days). The days reach event_time, the
-- partition column of the events table, so BigQuery reads only those partitions (plus one day).
SELECT
  org_slug,
  pipeline_id,
  day,
  COUNT(*) AS runs,
  COUNTIF(status = 'SUCCEEDED') AS succeeded,
  COUNTIF(status IN ('FAILED', 'TIMED_OUT', 'ORPHANED')) AS failed,
  ANY_VALUE(p50_ms) AS p50_ms,
  ANY_VALUE(p95_ms) AS p95_ms,
  SUM(IFNULL(bytes_billed, 0)) AS bytes_billed
FROM (
  SELECT
    org_slug,
    pipeline_id,
    DATE(created_at) AS day,
    status,
    bytes_billed,
    PERCENTILE_CONT(duration_ms, 0.5) OVER (PARTITION BY org_slug, pipeline_id, DATE(created_at)) AS p50_ms,
    PERCENTILE_CONT(duration_ms, 0.95) OVER (PARTITION BY org_slug, pipeline_id, DATE(created_at)) AS p95_ms
  FROM (
    SELECT
      org_slug,
      pipeline_id,
      status,
      bytes_billed,
      created_at,
      IF(status IN ('QUEUED', 'PENDING', 'RUNNING'), NULL,
         TIMESTAMP_DIFF(updated_at, COALESCE(started_at, created_at), MILLISECOND)) AS duration_ms
    FROM (
      SELECT
        org_slug,
        pipeline_id,
        status,
        bytes_billed,
        event_time AS updated_at,
        MIN(IF(status IN ('QUEUED', 'PENDING', 'REFUSED'), event_time, NULL)) OVER w AS created_at,
        MIN(IF(status = 'RUNNING', event_time, NULL)) OVER w AS started_at
      FROM `__META_DATASET__.pipeline_run_events`
      WHERE event_time >= TIMESTAMP(from_day)
        AND event_time < TIMESTAMP(DATE_ADD(to_day, INTERVAL 2 DAY))
      WINDOW w AS (PARTITION BY run_id)
      QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY event_seq DESC, event_time DESC) = 1
    )
    WHERE DATE(created_at) BETWEEN from_day AND to_day
  )
)
GROUP BY org_slug, pipeline_id, day
