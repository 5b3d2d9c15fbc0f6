# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use and
# reuse it for as long as setup.cfg, pyproject.toml and constraints.txt are unchanged (the install is
# several GB, so it is redone only when its inputs change).

PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Hadoop mini cluster's launcher (see the minicluster target). Defined before any rule: make expands
# a rule's prerequisites as it reads it.
MINICLUSTER := tests/minicluster
MINICLUSTER_STAMP := $(MINICLUSTER)/target/classpath.args

.PHONY: demo test test-slow dist venv check-java constraints clean bench-deps minicluster minicluster-jar gpu-check-data

demo: check-java $(STAMP)
	$(VENV)/bin/torchonspark demo demo-out --overwrite

test: check-java $(STAMP) $(MINICLUSTER_STAMP)
	$(VENV)/bin/pytest

# The slow tests (the packed environment through spark-submit, on local-cluster and on YARN: about 15
# minutes, 35 GB of temporary disk).
test-slow: check-java $(STAMP) $(MINICLUSTER_STAMP)
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

# What benchmarks/gpu_check.sh reads on a GPU machine that has no Java: the digits (JPEGs and
# Parquet) and 320 ImageNet-like photographs as Parquet, converted here (about 40 MB in all, small enough
# to carry there).
gpu-check-data: check-java $(STAMP)
	rm -rf build/gpu-check && mkdir -p build/gpu-check
	$(VENV)/bin/torchonspark make-digits build/gpu-check/digits
	$(VENV)/bin/torchonspark convert build/gpu-check/digits build/gpu-check/digits-parquet
	$(VPY) -c 'import sys; from pathlib import Path; sys.path.insert(0, "benchmarks"); from synthetic_imagenet import make_tree; make_tree(Path("build/gpu-check/imagenet"), 320)'
	$(VENV)/bin/torchonspark convert build/gpu-check/imagenet build/gpu-check/imagenet-parquet
	rm -rf build/gpu-check/imagenet

# A Hadoop mini cluster on this machine (tests/minicluster/: HDFS with 2 DataNodes and YARN with 2
# NodeManagers offering yarn.io/gpu, in one JVM), to try the YARN path: it writes the client
# configuration to build/hadoop-conf/ and Spark properties for apps on it to
# build/spark-minicluster.conf, prints its ready line and the HADOOP_CONF_DIR to export, and runs
# until Ctrl-C or SIGTERM. It ignores stdin, so `make minicluster &` works too (a background job that
# read the terminal would be stopped). Every start is a fresh, empty cluster (data and logs under
# build/minicluster/). `make minicluster SECURE=1` Kerberizes both (a KDC, Kerberos on every RPC, wire
# encryption, delegation tokens): it also writes krb5.conf, the user's keytab and a ticket cache (krb5cc)
# to build/hadoop-conf/, so that no kinit is needed (see README, Try it on this machine).
# Maven builds it once and records the classpath; it then starts with plain java, with no Maven (and
# no network) at run time. The classpath argfile is the stamp: written last, so that a failed build
# leaves none and the next make retries.

minicluster: check-java $(STAMP) $(MINICLUSTER_STAMP)
	$(VPY) tests/hadoop.py --spark-properties build/spark-minicluster.conf
	@echo "spark-submit --properties-file build/spark-minicluster.conf runs an app on it (see README, Running on YARN)"
	java @$(MINICLUSTER)/jvm.options @$(MINICLUSTER_STAMP) torchonspark.minicluster.MiniCluster \
		--conf-dir $(abspath build/hadoop-conf) --base-dir $(abspath build/minicluster) --ignore-stdin $(if $(SECURE),--secure)

minicluster-jar: $(MINICLUSTER_STAMP)

$(MINICLUSTER_STAMP): $(MINICLUSTER)/pom.xml $(shell find $(MINICLUSTER)/src -type f)
	@command -v mvn >/dev/null 2>&1 || { echo "Maven was not found: the mini cluster is built with Maven 3 (e.g. 'apt-get install maven')"; exit 1; }
	@echo "Building the Hadoop mini cluster (the first build downloads about 130 MB into ~/.m2)"
	mvn -q -B -f $(MINICLUSTER)/pom.xml package dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
	printf -- '-cp "%s:%s"\n' "$(abspath $(MINICLUSTER))/target/minicluster.jar" "$$(cat $(MINICLUSTER)/target/classpath.txt)" > $@

# Spark needs a JVM; say so plainly instead of letting py4j fail later.
check-java:
	@java -version >/dev/null 2>&1 || { echo "Java was not found: Spark needs Java 17 (install OpenJDK 17, e.g. 'apt-get install openjdk-17-jre-headless', and put java on PATH)"; exit 1; }

# Re-pin the tested set after changing the ranges in setup.cfg.
constraints: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(VPY) -m pip freeze --exclude-editable --exclude torchonspark; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
