-- One org's limits and usage. LIMIT 1.
SELECT
  org_slug,
  daily_limit,
  monthly_limit,
  concurrent_limit,
  CAST(day AS STRING) AS day,
  runs_today,
  CAST(month AS STRING) AS month,
  runs_month,
  active_run_ids,
  IFNULL(queue_limit, 10) AS queue_limit,
  IFNULL(queued_run_ids, []) AS queued_run_ids,
  bytes_daily_limit,
  bytes_monthly_limit,
  bytes_per_job_limit,
  IFNULL(bytes_today, 0) AS bytes_today,
  IFNULL(bytes_month, 0) AS bytes_month
FROM `__META_DATASET__.org_quota_state`
WHERE org_slug = @org_slug
LIMIT 1
