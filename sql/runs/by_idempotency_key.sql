-- The run an Idempotency-Key already started for this org (30 days). LIMIT 1.
SELECT run_id, pipeline_id
FROM `__META_DATASET__.pipeline_run_events`
WHERE org_slug = @org_slug
  AND idempotency_key = @idempotency_key
  AND event_time >= TIMESTAMP_SUB(@now, INTERVAL 30 DAY)
ORDER BY event_time
LIMIT 1
