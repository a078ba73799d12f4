-- For the runs executing on one instance (parallel arrays of run ids and their orgs): whether
-- each still holds its concurrency slot (a reaper may have freed it) and whether a
-- cancellation was requested through another instance. One row per run given.
WITH mine AS (
  SELECT run_id, org_slug
  FROM UNNEST(@run_ids) AS run_id WITH OFFSET AS i
  JOIN UNNEST(@org_slugs) AS org_slug WITH OFFSET AS j ON i = j
),
held AS (
  SELECT q.org_slug, run_id
  FROM `__META_DATASET__.org_quota_state` AS q, UNNEST(q.active_run_ids) AS run_id
  WHERE run_id IN UNNEST(@run_ids)
),
cancels AS (
  SELECT org_slug, run_id, MIN(requested_by) AS requested_by
  FROM `__META_DATASET__.run_cancel_requests`
  WHERE requested_at >= TIMESTAMP_SUB(@now, INTERVAL 2 DAY)
    AND run_id IN UNNEST(@run_ids)
  GROUP BY org_slug, run_id
)
SELECT
  m.run_id,
  h.run_id IS NOT NULL AS held,
  c.run_id IS NOT NULL AS cancel_requested,
  c.requested_by AS cancelled_by
FROM mine AS m
LEFT JOIN held AS h ON h.run_id = m.run_id AND h.org_slug = m.org_slug
LEFT JOIN cancels AS c ON c.run_id = m.run_id AND c.org_slug = m.org_slug
LIMIT 1000
