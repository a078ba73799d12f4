# Quarry: make run (service on local defaults), make test (the whole suite).
.PHONY: run test soak lint fmt emulator-env bench bench-auth bench-scale bench-reads fuzz clean check-config validate

run:
	@scripts/run-local.sh

test:
	@scripts/test.sh

fuzz:
	@scripts/fuzz.sh

# Three instances behind the BigQuery model with flapping and lost answers, SOAK_SECS (600) of
# mixed load, then the eight invariants checked against the tables (not part of make test,
# which runs a 60-second soak).
soak:
	@scripts/soak.sh

# The settings make run would use, checked, with the pipeline and provider definitions.
check-config:
	@scripts/check-config.sh

# The pipeline definitions under pipelines/ and their SQL.
validate:
	@cargo run --quiet --locked --bin quarry -- pipelines validate

bench:
	@scripts/bench.sh

bench-auth:
	@scripts/bench-auth.sh

bench-scale:
	@scripts/bench-scale.sh

# 1,000 people watching 200 runs (pollers and event streams) behind BigQuery's query limits.
bench-reads:
	@scripts/bench-reads.sh

emulator-env:
	@scripts/emulator-env.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets --features quarry/bench -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf .venv .emulator
