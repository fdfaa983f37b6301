# Developer tasks. The README's two commands need nothing but bash and Python.
.PHONY: install test test-sqlite lint fmt bench serve demo messages

install:
	bash scripts/bootstrap.sh --extra test

test:
	bash scripts/test.sh

test-sqlite: install
	.venv/bin/python -m pytest -q

lint: install
	.venv/bin/ruff check src tests benchmarks scripts
	SIYU_DATA_DIR=$$(mktemp -d) .venv/bin/python -m django makemigrations --check --dry-run --settings=siyu.settings

fmt: install
	.venv/bin/ruff check --fix src tests benchmarks scripts
	.venv/bin/ruff format src tests benchmarks scripts

bench: install
	.venv/bin/python benchmarks/bench_ingest.py
	.venv/bin/python benchmarks/bench_lookup.py
	.venv/bin/python benchmarks/bench_demo.py
	.venv/bin/python benchmarks/bench_analytics.py
	.venv/bin/python benchmarks/bench_dashboard.py
	.venv/bin/python benchmarks/bench_segments.py

messages: install
	.venv/bin/python scripts/compile_messages.py

serve: install
	.venv/bin/siyu serve

demo:
	bash scripts/demo.sh
