-- Per pipeline and error class: failed runs of one org created in [since, until).
WITH latest AS (
  SELECT
    run_id,
    pipeline_id,
    status,
    error_class,
    UNIX_MICROS(MIN(IF(status = 'PENDING', event_time, NULL)) OVER w) AS created_at_micros
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug = @org_slug
    AND event_time >= @since
    AND event_time < TIMESTAMP_ADD(@until, INTERVAL 1 DAY)
  WINDOW w AS (PARTITION BY run_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY event_seq DESC, event_time DESC) = 1
)
SELECT pipeline_id, COALESCE(error_class, 'unknown') AS error_class, COUNT(*) AS runs
FROM latest
WHERE status IN ('FAILED', 'TIMED_OUT', 'ORPHANED')
  AND created_at_micros >= UNIX_MICROS(@since)
  AND created_at_micros < UNIX_MICROS(@until)
GROUP BY pipeline_id, error_class
ORDER BY pipeline_id, error_class
LIMIT 1000
