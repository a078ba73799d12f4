-- The first pages of several orgs' run lists under one filter, in one read (the run lists'
-- first pages asked within a poll interval, batched by crate::live::pages): per org its newest
-- `limit` runs created in [since, until), filtered, as runs/list_by_org.sql answers a first page.
-- Each run's current state is its latest event (duplicates collapse); creation = its QUEUED or
-- PENDING event. The event_time bounds are the partition filter (from the start of the month of
-- `since`, for the usage counts; runs last at most a day past creation).
WITH latest AS (
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
    UNIX_MICROS(event_time) AS updated_at_micros,
    UNIX_MICROS(MIN(IF(status IN ('QUEUED', 'PENDING', 'REFUSED'), event_time, NULL)) OVER w) AS created_at_micros,
    UNIX_MICROS(MIN(IF(status = 'QUEUED', event_time, NULL)) OVER w) AS queued_at_micros,
    UNIX_MICROS(MIN(IF(status = 'PENDING', event_time, NULL)) OVER w) AS admitted_at_micros,
    UNIX_MICROS(MIN(IF(status = 'RUNNING', event_time, NULL)) OVER w) AS started_at_micros
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug IN UNNEST(@org_slugs)
    AND event_time >= TIMESTAMP(DATE_TRUNC(DATE(@since), MONTH))
    AND event_time < TIMESTAMP_ADD(@until, INTERVAL 1 DAY)
  WINDOW w AS (PARTITION BY run_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY event_seq DESC, event_time DESC) = 1
),
-- Quota usage at admission: every admitted run has a PENDING event, so a run's rank among its
-- org's runs of the same UTC day (month) is the day's (month's) count once it was admitted.
numbered AS (
  SELECT
    *,
    ROW_NUMBER() OVER (
      PARTITION BY org_slug, DATE(TIMESTAMP_MICROS(created_at_micros))
      ORDER BY created_at_micros, run_id
    ) AS runs_today_at_admission,
    ROW_NUMBER() OVER (
      PARTITION BY org_slug, DATE_TRUNC(DATE(TIMESTAMP_MICROS(created_at_micros)), MONTH)
      ORDER BY created_at_micros, run_id
    ) AS runs_month_at_admission
  FROM latest
  WHERE created_at_micros IS NOT NULL
),
-- Each org's runs under the filter, ranked newest first: a page is its first `limit`.
ranked AS (
  SELECT
    *,
    ROW_NUMBER() OVER (PARTITION BY org_slug ORDER BY created_at_micros DESC, run_id DESC) AS page_rank
  FROM numbered
  WHERE created_at_micros >= UNIX_MICROS(@since)
    AND created_at_micros < UNIX_MICROS(@until)
    AND (ARRAY_LENGTH(@statuses) = 0 OR status IN UNNEST(@statuses))
    AND (@pipeline_id = '' OR pipeline_id = @pipeline_id)
    AND (@trigger = '' OR trigger = @trigger)
)
SELECT *
FROM ranked
WHERE page_rank <= @limit
ORDER BY org_slug, created_at_micros DESC, run_id DESC
LIMIT @max_rows
