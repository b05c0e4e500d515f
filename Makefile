# Everyday commands; each one installs what it needs first (scripts/setup.sh).
.PHONY: setup test lint demo bench bench-quick bench-compare clean

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

demo:
	bash scripts/demo.sh

bench:
	bash scripts/bench.sh

bench-quick:
	bash scripts/bench.sh --quick

# make bench-compare OLD=<rev>: quick parts of OLD and HEAD side by side
bench-compare:
	bash scripts/bench_compare.sh $(OLD)

clean:
	rm -rf .venv build *.egg-info xdelta_ffi/*.so .work benchmarks/.cache
