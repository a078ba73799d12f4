-- Claims an org slug and its dataset id: inserts nothing when either is taken.
INSERT INTO `__META_DATASET__.org_profiles`
  (org_slug, company_name, admin_email, plan, status, dataset_id, created_at, updated_at)
SELECT @org_slug, @company_name, @admin_email, @plan, 'ACTIVE', @dataset_id, @now, @now
FROM UNNEST([1])
WHERE NOT EXISTS (
  SELECT 1 FROM `__META_DATASET__.org_profiles`
  WHERE org_slug = @org_slug OR dataset_id = @dataset_id
)
