-- An org's latest alert deliveries in [since, until): the last attempt of each delivery, newest
-- first. The window reaches attempted_at, the partition column. At most 100 rows.
SELECT
  delivery_id,
  channel_id,
  event,
  run_id,
  pipeline_id,
  attempt,
  status,
  http_status,
  error,
  UNIX_MICROS(attempted_at) AS attempted_at_micros
FROM `__META_DATASET__.notification_deliveries`
WHERE org_slug = @org_slug
  AND attempted_at >= @since
  AND attempted_at < @until
QUALIFY ROW_NUMBER() OVER (PARTITION BY delivery_id ORDER BY attempt DESC, attempted_at DESC) = 1
ORDER BY attempted_at DESC, delivery_id
LIMIT @limit
