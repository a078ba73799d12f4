-- Six sample requests for the given day, replacing whatever rows the day held, in one
-- statement: running it again for the same day leaves the same six rows.
MERGE `__ORG_DATASET__.raw_usage` AS t
USING (
  SELECT @day AS event_day, provider, model, input_tokens, output_tokens, cost_usd
  FROM UNNEST([
    STRUCT('openai' AS provider, 'gpt-4o' AS model, 1200 AS input_tokens, 300 AS output_tokens, 0.0105 AS cost_usd),
    STRUCT('openai', 'gpt-4o', 800, 200, 0.007),
    STRUCT('openai', 'gpt-4o-mini', 5000, 1000, 0.00135),
    STRUCT('anthropic', 'claude-sonnet', 2000, 500, 0.0135),
    STRUCT('anthropic', 'claude-sonnet', 1000, 250, 0.00675),
    STRUCT('anthropic', 'claude-haiku', 4000, 800, 0.0042)
  ])
) AS s
ON FALSE
WHEN NOT MATCHED BY SOURCE AND t.event_day = @day THEN DELETE
WHEN NOT MATCHED THEN
  INSERT (event_day, provider, model, input_tokens, output_tokens, cost_usd)
  VALUES (s.event_day, s.provider, s.model, s.input_tokens, s.output_tokens, s.cost_usd)
