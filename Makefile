# The two commands a newcomer needs: `make dev` (run it locally) and `make test` (every test).
.PHONY: dev test build clean bench-segments bench-import bench-coldstart load fuzz schemathesis capacity flood hostile-imports

dev:
	@scripts/dev.sh

test:
	@scripts/test.sh

# Deploy build: sam build (arm64, release) and each function's bootstrap size.
build:
	@scripts/build.sh

bench-segments:
	@scripts/bench-segments.sh

# A bulk import of IMPORT_BENCH_ROWS (100,000) ~1 KB rows through the import worker vs boto3's
# batch_writer writing the same items, on one throwaway local server: rows/s, requests, write
# units per row and the worker's peak RSS.
bench-import:
	@scripts/bench-import.sh

# Hostile import files (commas, line ends, huge cells, a 300 KB header, bad UTF-8, BOM and CR,
# gzip) at HOSTILE_MB (100) each, one process per file: outcome, cost and the worker's peak RSS.
hostile-imports:
	@scripts/hostile-imports.sh

# Cold start of each function (exec -> first response, peak RSS) vs the boto3 floor.
bench-coldstart:
	@scripts/bench-coldstart.sh

# 10,000 mixed requests at 50 concurrent against a running `make dev`, then a read-back of
# every acknowledged write; fails on any 5xx or missing write.
load:
	@scripts/load.sh

# Cost per call of every route (units from the local DynamoDB's meter, AWS prices, the floor and
# the ratio) and the scale simulation: writes docs/CAPACITY.md. Starts its own stack unless
# DEV_DIR names a running `make dev`. Knobs: scripts/capacity.py --help (CAPACITY_ARGS).
capacity:
	@scripts/capacity.sh $(CAPACITY_ARGS)

# The rate limiter under a 30 s flood at 50x an account's limit, beside a calm account
# (tests/tests/suite/flood.rs; `make test` runs it for 5 s). Prints the FLOOD line PERFORMANCE quotes.
flood:
	@FLOOD_SECS=$${FLOOD_SECS:-30} scripts/quick-test.sh -p integration-tests --test suite -- flood:: --nocapture

# Schema fuzzing of a running `make dev` against docs/openapi.yaml (schemathesis, every
# check); fails on any failure. Knobs: SCHEMATHESIS_MAX_EXAMPLES, SCHEMATHESIS_WORKERS, DEV_DIR.
schemathesis:
	@scripts/schemathesis.sh

# cargo-fuzz targets of fuzz/, one after another, FUZZ_SECONDS each (default 600); not part
# of `make test`, which replays their seeds on stable.
fuzz:
	@scripts/fuzz.sh $(FUZZ_TARGETS)

clean:
	rm -rf target .dev .aws-sam
