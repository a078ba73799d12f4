-- Admin (root key): runs of every org, or of one when org_filter is set; otherwise as
-- runs/list_by_org.sql.
WITH latest AS (
  SELECT
    org_slug,
    run_id,
    pipeline_id,
    status,
    error_class,
    error_summary,
    MAX(trigger) OVER w AS trigger,
    MAX(triggered_by) OVER w AS triggered_by,
    MAX(runs_today_at_admission) OVER w AS runs_today_at_admission,
    MAX(runs_month_at_admission) OVER w AS runs_month_at_admission,
    UNIX_MICROS(event_time) AS updated_at_micros,
    UNIX_MICROS(MIN(IF(status = 'PENDING', event_time, NULL)) OVER w) AS created_at_micros,
    UNIX_MICROS(MIN(IF(status = 'RUNNING', event_time, NULL)) OVER w) AS started_at_micros
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE (@org_filter = '' OR org_slug = @org_filter)
    AND event_time >= @since
    AND event_time < TIMESTAMP_ADD(@until, INTERVAL 1 DAY)
  WINDOW w AS (PARTITION BY run_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY event_seq DESC, event_time DESC) = 1
)
SELECT *
FROM latest
WHERE created_at_micros >= UNIX_MICROS(@since)
  AND created_at_micros < UNIX_MICROS(@until)
  AND (ARRAY_LENGTH(@statuses) = 0 OR status IN UNNEST(@statuses))
  AND (@pipeline_id = '' OR pipeline_id = @pipeline_id)
  AND (@trigger = '' OR trigger = @trigger)
  AND (created_at_micros < @before_micros OR (created_at_micros = @before_micros AND run_id < @before_id))
ORDER BY created_at_micros DESC, run_id DESC
LIMIT @limit
