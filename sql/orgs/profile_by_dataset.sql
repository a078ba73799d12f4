-- Which org owns a dataset id (a-b and a_b map to the same one). LIMIT 1.
SELECT org_slug
FROM `__META_DATASET__.org_profiles`
WHERE dataset_id = @dataset_id
LIMIT 1
