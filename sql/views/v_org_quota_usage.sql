-- Per org: limits, today's and this month's usage (zero after a rollover), slots in use.
SELECT
  org_slug,
  daily_limit,
  monthly_limit,
  concurrent_limit,
  IF(day = CURRENT_DATE(), runs_today, 0) AS runs_today,
  IF(month = DATE_TRUNC(CURRENT_DATE(), MONTH), runs_month, 0) AS runs_month,
  ARRAY_LENGTH(active_run_ids) AS active_runs,
  updated_at
FROM `__META_DATASET__.org_quota_state`
