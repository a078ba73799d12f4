-- Per org, pipeline and day of creation: runs, outcomes, duration percentiles and the bytes the
-- ended runs billed.
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
  FROM `__META_DATASET__.v_pipeline_runs`
)
GROUP BY org_slug, pipeline_id, day
