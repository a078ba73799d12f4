-- Per model: how many items and tokens were extracted (duplicates from retried pages collapse
-- on the item id).
SELECT model, COUNT(*) AS items, SUM(tokens) AS tokens
FROM (
  SELECT _item_id, ANY_VALUE(model) AS model, ANY_VALUE(tokens) AS tokens
  FROM `__ORG_DATASET__.provider_usage`
  GROUP BY _item_id
)
GROUP BY model
