-- Reaper (system scope, all orgs): runs holding a concurrency slot with no heartbeat, no event
-- and no admission since the lease began, except the reaping instance's own (own_run_ids).
-- A slot is dated from the batch that admitted it: its mark in admitted_by is
-- "run_id/<batch micros>_<uuid>", so a run admitted a moment ago whose first event is not
-- written yet is never stale. Oldest sign of life first, 100 per pass; last_seen_micros is when
-- the run was last known alive; started says whether it ever had a PENDING event and no end
-- saying it never started (class 'admission': its PENDING insert's answer was lost, its trigger
-- answered 503). A run that never started (that one, or one cancelled while it waited in a
-- queue) has its count given back with its slot.
WITH active AS (
  SELECT
    q.org_slug,
    run_id,
    (SELECT MAX(SAFE_CAST(SPLIT(SPLIT(m, '/')[SAFE_OFFSET(1)], '_')[SAFE_OFFSET(0)] AS INT64))
     FROM UNNEST(IFNULL(q.admitted_by, [])) AS m
     WHERE SPLIT(m, '/')[SAFE_OFFSET(0)] = run_id) AS admitted_micros
  FROM `__META_DATASET__.org_quota_state` AS q, UNNEST(q.active_run_ids) AS run_id
),
beats AS (
  SELECT run_id, MAX(heartbeat_at) AS last_beat
  FROM `__META_DATASET__.run_heartbeats`
  WHERE heartbeat_at >= TIMESTAMP_SUB(@now, INTERVAL 2 DAY)
  GROUP BY run_id
),
events AS (
  SELECT
    run_id,
    MAX(event_time) AS last_event,
    ARRAY_AGG(status ORDER BY event_seq DESC, event_time DESC LIMIT 1)[OFFSET(0)] AS status,
    ANY_VALUE(pipeline_id) AS pipeline_id,
    LOGICAL_OR(status = 'PENDING') AND NOT LOGICAL_OR(IFNULL(error_class, '') = 'admission')
      AS started
  FROM `__META_DATASET__.pipeline_run_events`
  WHERE event_time >= TIMESTAMP_SUB(@now, INTERVAL 2 DAY)
  GROUP BY run_id
),
stale AS (
  SELECT
    a.org_slug,
    a.run_id,
    e.status,
    e.pipeline_id,
    IFNULL(e.started, FALSE) AS started,
    UNIX_MICROS(GREATEST(
      COALESCE(b.last_beat, TIMESTAMP '1970-01-01'),
      COALESCE(e.last_event, TIMESTAMP '1970-01-01'),
      TIMESTAMP_MICROS(IFNULL(a.admitted_micros, 0))
    )) AS last_seen_micros
  FROM active AS a
  LEFT JOIN beats AS b ON b.run_id = a.run_id
  LEFT JOIN events AS e ON e.run_id = a.run_id
  WHERE a.run_id NOT IN UNNEST(@own_run_ids)
    AND COALESCE(b.last_beat, TIMESTAMP '1970-01-01') < @stale_before
    AND COALESCE(e.last_event, TIMESTAMP '1970-01-01') < @stale_before
    AND TIMESTAMP_MICROS(IFNULL(a.admitted_micros, 0)) < @stale_before
)
-- Sorted from a CTE: the emulator mis-binds parameters when it sorts the join itself.
SELECT org_slug, run_id, status, pipeline_id, started, last_seen_micros
FROM stale
ORDER BY last_seen_micros, run_id
LIMIT 100
