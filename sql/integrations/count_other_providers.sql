-- How many other providers the org has active credentials for (the plan bounds it). LIMIT 1.
SELECT COUNT(DISTINCT provider) AS n
FROM `__META_DATASET__.org_integration_credentials`
WHERE org_slug = @org_slug
  AND is_active
  AND provider != @provider
LIMIT 1
