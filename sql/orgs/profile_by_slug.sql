-- One org profile by slug. Auth-style lookup: LIMIT 1.
SELECT
  org_slug,
  company_name,
  admin_email,
  plan,
  status,
  dataset_id,
  UNIX_MICROS(created_at) AS created_at_micros
FROM `__META_DATASET__.org_profiles`
WHERE org_slug = @org_slug
ORDER BY created_at DESC
LIMIT 1
