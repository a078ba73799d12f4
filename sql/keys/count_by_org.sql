-- How many keys an org has (onboarding resumes only when it has none). LIMIT 1.
SELECT COUNT(*) AS n
FROM `__META_DATASET__.org_api_keys`
WHERE org_slug = @org_slug
LIMIT 1
