-- Org profiles in slug order, after the cursor. LIMIT is page size + 1 (the next-page probe).
SELECT
  org_slug,
  company_name,
  admin_email,
  plan,
  status,
  dataset_id,
  UNIX_MICROS(created_at) AS created_at_micros
FROM `__META_DATASET__.org_profiles`
WHERE org_slug > @after_slug
ORDER BY org_slug
LIMIT @limit
