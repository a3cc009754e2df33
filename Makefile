# The two commands a newcomer needs: `make dev` (run it locally) and `make test` (every test).
.PHONY: dev test build clean bench-segments bench-coldstart

dev:
	@scripts/dev.sh

test:
	@scripts/test.sh

# Deploy build: sam build (arm64, release) and each function's bootstrap size.
build:
	@scripts/build.sh

bench-segments:
	@scripts/bench-segments.sh

# Cold start of each function (exec -> first response, peak RSS) vs the boto3 floor.
bench-coldstart:
	@scripts/bench-coldstart.sh

clean:
	rm -rf target .dev .aws-sam
