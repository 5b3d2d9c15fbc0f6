# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use and
# reuse it for as long as setup.cfg, pyproject.toml and constraints.txt are unchanged (the install is
# several GB, so it is redone only when its inputs change).

PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow dist venv check-java constraints clean bench-deps

demo: check-java $(STAMP)
	$(VENV)/bin/torchonspark demo demo-out --overwrite

test: check-java $(STAMP)
	$(VENV)/bin/pytest

# The slow tests (the packed environment through spark-submit: about 4 minutes, 25 GB of temporary disk).
test-slow: check-java $(STAMP)
	$(VENV)/bin/pytest -m slow

# A relocatable archive of the whole environment, for spark-submit --archives (see README, Running on YARN).
dist: $(STAMP)
	$(VENV)/bin/torchonspark pack-env dist/torchonspark-env.tar.gz --overwrite

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) was not found: install Python 3.11, or run make PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "$(PYTHON) is not Python 3.11: the tested stack (constraints.txt) needs 3.11; run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Extra packages that only benchmarks/decode.py compares (not needed by the jobs or the tests).
bench-deps: $(STAMP)
	$(VPY) -m pip install --quiet -c constraints.txt -e '.[test,bench]'

# Spark needs a JVM; say so plainly instead of letting py4j fail later.
check-java:
	@java -version >/dev/null 2>&1 || { echo "Java was not found: Spark needs Java 17 (install OpenJDK 17, e.g. 'apt-get install openjdk-17-jre-headless', and put java on PATH)"; exit 1; }

# Re-pin the tested set after changing the ranges in setup.cfg.
constraints: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(VPY) -m pip freeze --exclude-editable --exclude torchonspark; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
