-- Which of these runs still wait in their org's queue (the queue is the org's quota row: the
-- truth the admission batches keep), for the queued-too-long alerts. One row per org is read;
-- a run not returned has left the queue (started, cancelled or refused).
SELECT q.org_slug, run_id
FROM `__META_DATASET__.org_quota_state` AS q, UNNEST(IFNULL(q.queued_run_ids, [])) AS run_id
WHERE q.org_slug IN UNNEST(@org_slugs)
  AND run_id IN UNNEST(@run_ids)
ORDER BY q.org_slug, run_id
LIMIT @limit
