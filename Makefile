# The two commands a newcomer needs: `make dev` (run it locally) and `make test` (every test).
.PHONY: dev test build clean

dev:
	@scripts/dev.sh

test:
	@scripts/test.sh

clean:
	rm -rf target .dev
