-- The scheduler's one read per pass (all orgs): every ACTIVE schedule and backfill of an ACTIVE
-- org, since when it is active (its latest change), and the last logical time fired for it
-- (from the org's fired ticks, keyed schedule:{schedule_id} or backfill:{id}), with the runs
-- of the org that hold a slot or wait (a backfill counts its own).
WITH latest AS (
  SELECT org_slug, schedule_id, kind, status, pipeline_id, parameters, details, changed_at
  FROM `__META_DATASET__.schedule_states`
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY org_slug, schedule_id ORDER BY changed_at DESC, change_id DESC) = 1
),
fired AS (
  SELECT
    q.org_slug,
    SPLIT(f, '|')[OFFSET(1)] AS tick_key,
    MAX(SPLIT(f, '|')[OFFSET(2)]) AS last_tick,
    ARRAY_AGG(SPLIT(f, '|')[OFFSET(0)]) AS fired_runs
  FROM `__META_DATASET__.org_quota_state` AS q, UNNEST(IFNULL(q.fired_ticks, [])) AS f
  GROUP BY q.org_slug, tick_key
),
busy AS (
  SELECT org_slug, ARRAY_CONCAT(active_run_ids, IFNULL(queued_run_ids, [])) AS in_flight
  FROM `__META_DATASET__.org_quota_state`
),
due AS (
  SELECT
    l.org_slug,
    l.schedule_id,
    l.kind,
    l.pipeline_id,
    l.parameters,
    l.details,
    UNIX_MICROS(l.changed_at) AS since_micros,
    f.last_tick,
    IFNULL(f.fired_runs, []) AS fired_runs,
    IFNULL(b.in_flight, []) AS in_flight
  FROM latest AS l
  JOIN `__META_DATASET__.org_profiles` AS p ON p.org_slug = l.org_slug
  LEFT JOIN fired AS f
    ON f.org_slug = l.org_slug
   AND f.tick_key = CONCAT(IF(l.kind = 'backfill', '', 'schedule:'), l.schedule_id)
  LEFT JOIN busy AS b ON b.org_slug = l.org_slug
  WHERE l.status = 'ACTIVE'
    AND p.status = 'ACTIVE'
)
SELECT * FROM due
ORDER BY org_slug, schedule_id
LIMIT @max_schedules
