# The two commands of the README:
#   make demo   set up, then validate + show + plan + render the built-in prod environment
#   make test   set up (system packages too when run as root), then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STACK  ?= prod

.PHONY: setup setup-test system-packages demo test lint bench fuzz clean

$(BIN)/aiinfra: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@touch $@

setup: $(BIN)/aiinfra

setup-test: setup
	$(BIN)/pip install -q -e '.[test]'

system-packages: setup
	@if [ "$$(id -u)" = 0 ]; then bash scripts/install-system-packages.sh && bash scripts/build-testbed-slurm.sh $(BIN)/python; \
	else echo "not root: skipping Debian packages (tests that need Slurm, munge, sshd skip themselves)"; fi

demo: setup
	$(BIN)/aiinfra validate --stack $(STACK)
	$(BIN)/aiinfra show --stack $(STACK)
	@if $(BIN)/aiinfra plan --help >/dev/null 2>&1; then $(BIN)/aiinfra plan --stack $(STACK); fi
	$(BIN)/aiinfra render --stack $(STACK)

# The suite in parallel (pytest-xdist): TEST_WORKERS processes, each module whole on one worker;
# the modules of the Slurm test bed are one unit (tests/conftest.py SLURM_BED_MODULES), run first.
TEST_WORKERS ?= auto
test: setup-test system-packages
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope

lint: setup-test
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/bench_render.py

# 10,000 seeded mutants of stacks/*.yaml through validate + render (docs/benchmarks.md#fuzz);
# failing cases and report.json land in /tmp/aiinfra-fuzz. The suite runs the short profile (150 cases).
fuzz: setup
	$(BIN)/python benchmarks/fuzz.py --profile full

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
