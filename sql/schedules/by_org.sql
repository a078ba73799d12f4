-- One org's schedules and backfills: the latest change of each, newest first.
SELECT
  schedule_id,
  kind,
  status,
  pipeline_id,
  parameters,
  details,
  changed_by,
  UNIX_MICROS(changed_at) AS changed_at_micros
FROM `__META_DATASET__.schedule_states`
WHERE org_slug = @org_slug
  AND (@kind = '' OR kind = @kind)
QUALIFY ROW_NUMBER() OVER (PARTITION BY schedule_id ORDER BY changed_at DESC, change_id DESC) = 1
ORDER BY changed_at DESC
LIMIT 1000
