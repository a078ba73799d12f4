-- The day's rows of usage_daily, one per provider and model, replacing whatever the day held
-- in one statement (the pattern for idempotent daily pipelines: re-running a day rewrites it).
MERGE `__ORG_DATASET__.usage_daily` AS t
USING (
  SELECT
    event_day AS day,
    provider,
    model,
    COUNT(*) AS requests,
    SUM(input_tokens) AS input_tokens,
    SUM(output_tokens) AS output_tokens,
    ROUND(SUM(cost_usd), 6) AS cost_usd
  FROM `__ORG_DATASET__.raw_usage`
  WHERE event_day = @day
  GROUP BY event_day, provider, model
) AS s
ON FALSE
WHEN NOT MATCHED BY SOURCE AND t.day = @day THEN DELETE
WHEN NOT MATCHED THEN
  INSERT (day, provider, model, requests, input_tokens, output_tokens, cost_usd)
  VALUES (s.day, s.provider, s.model, s.requests, s.input_tokens, s.output_tokens, s.cost_usd)
