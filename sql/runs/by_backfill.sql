-- The child runs of one backfill (their start events carry its id) with their current status
-- (the latest of all their events), from the day it started (partition filter).
WITH children AS (
  SELECT DISTINCT run_id
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE org_slug = @org_slug
    AND backfill_id = @backfill_id
    AND event_time >= TIMESTAMP_SUB(@since, INTERVAL 1 DAY)
)
SELECT
  e.run_id,
  ARRAY_AGG(e.status ORDER BY e.event_seq DESC, e.event_time DESC LIMIT 1)[OFFSET(0)] AS status
FROM `__META_DATASET__.pipeline_run_events` AS e
JOIN children AS c ON c.run_id = e.run_id
WHERE e.org_slug = @org_slug
  AND e.event_time >= TIMESTAMP_SUB(@since, INTERVAL 1 DAY)
GROUP BY e.run_id
LIMIT 1000
