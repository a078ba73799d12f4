-- The run an Idempotency-Key already started for this org (30 days): the pipeline and the
-- parameters its PENDING event recorded, and its current status (its latest event).
WITH started AS (
  SELECT run_id, pipeline_id, parameters
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug = @org_slug
    AND idempotency_key = @idempotency_key
    AND event_time >= TIMESTAMP_SUB(@now, INTERVAL 30 DAY)
  ORDER BY event_time
  LIMIT 1
),
latest AS (
  SELECT
    run_id,
    ARRAY_AGG(status ORDER BY event_seq DESC, event_time DESC LIMIT 1)[OFFSET(0)] AS status
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug = @org_slug
    AND run_id IN (SELECT run_id FROM started)
    AND event_time >= TIMESTAMP_SUB(@now, INTERVAL 31 DAY)
  GROUP BY run_id
)
SELECT s.run_id, s.pipeline_id, s.parameters, l.status
FROM started AS s
LEFT JOIN latest AS l ON l.run_id = s.run_id
LIMIT 1
