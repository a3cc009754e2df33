# The two commands a newcomer needs: `make dev` (run it locally) and `make test` (every test).
.PHONY: dev test build clean bench-segments

dev:
	@scripts/dev.sh

test:
	@scripts/test.sh

bench-segments:
	@scripts/bench-segments.sh

clean:
	rm -rf target .dev
