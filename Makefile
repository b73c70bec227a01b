# Entry points. `make test` is what CI runs (through .ci/run).
PYTHON      := .venv/bin/python
PYTEST_ARGS ?= -q -ra
ARGS        ?=

.PHONY: setup system-packages test serve demo report bench

setup:
	bash scripts/setup-env

system-packages:
	bash scripts/ensure-system-packages

test: system-packages setup
	$(PYTHON) -m pytest $(PYTEST_ARGS)

serve: setup
	.venv/bin/usage-dashboard serve $(ARGS)

demo: setup
	.venv/bin/usage-dashboard demo $(ARGS)

# One view as text (or --format json); e.g. after `make serve` or `make demo`:
#   make report ARGS="--db demo/demo.sqlite3 --router-config demo/demo-router.yaml --viewer carol@acme.example"
report: setup
	.venv/bin/usage-dashboard report $(ARGS)

# Issue 6's benchmark (about 10 min once its databases exist; see docs/performance.md).
bench: system-packages setup
	$(PYTHON) benchmarks/refresh.py $(ARGS)
