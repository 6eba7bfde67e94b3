# sre.rollout — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON    ?= python3
VENV      := .venv
PY        := $(VENV)/bin/python
LAB_HOSTS ?= 6
LAB_DIR   ?= $(CURDIR)/.lab
LAB_NET   ?= 10
PYTEST_ARGS ?= --durations=15
# `make test` runs the suite on TEST_LABS labs side by side, one pytest-xdist worker per lab:
# lab 1 is the default lab ($(LAB_DIR), LAB_NET $(LAB_NET)), lab N is .lab-N on LAB_NET LAB_NET+N-1;
# lab 2 is production-shaped (LAB_PROFILE=production: HTTPS, basic auth, LB names unlike the inventory).
# Tests marked profile("production") / profile("default") run on that lab whichever worker runs them.
# After the suite, `make test` builds the release history of the ledger the suite wrote (.rollout) with
# playbooks/history.yml and checks it, and a real report, in headless Chromium (tests/browser/).
TEST_LABS ?= 2
export LAB_HOSTS LAB_DIR
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup venv packages collection lab-up lab-down lab-status demo test test-unit test-cmdb test-matrix bench-quick lint lint-venv clean

help:
	@echo "make demo        set everything up and run a release in the lab"
	@echo "make test        set everything up and run all tests (lab up, pytest, lab down)"
	@echo "make setup       .venv + Debian packages + collection link"
	@echo "make lab-up      start the lab (LAB_HOSTS=$(LAB_HOSTS)); make lab-down stops it"
	@echo "make test-cmdb   the CMDB plugin against a real NetBox (slow the first time)"
	@echo "make test-matrix unit tests on ansible-core $(MATRIX), one lab release on the newest"
	@echo "make bench-quick the release benchmark's quick mode on a lab of its own (a few minutes)"
	@echo "make lint        ansible-test sanity, antsibull-docs, ansible-lint (production), galaxy-importer"

setup: packages venv collection

packages:
	@scripts/setup-packages.sh

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

venv: $(VENV)/.installed

# ansible.cfg points collections_path at .collections; the collection is the repo itself.
collection:
	@mkdir -p .collections/ansible_collections/sre
	@ln -sfn ../../.. .collections/ansible_collections/sre/rollout

# LAB_PROFILE=production (from the environment) starts a production-shaped lab: see tests/lab/lab.py.
lab-up: setup
	$(PY) tests/lab/lab.py up

lab-down:
	@if [ -x $(PY) ]; then $(PY) tests/lab/lab.py down; else $(PYTHON) tests/lab/lab.py down; fi

lab-status:
	$(PY) tests/lab/lab.py status

demo: setup
	$(MAKE) lab-up
	$(PY) tests/lab/demo.py

test: setup
	@rc=0; dirs=""; \
	for n in $$(seq 1 $(TEST_LABS)); do \
	  if [ $$n = 1 ]; then dir=$(LAB_DIR); else dir=$(CURDIR)/.lab-$$n; fi; dirs="$$dirs$${dirs:+:}$$dir"; \
	  if [ $$n = 2 ]; then profile=production; else profile=default; fi; \
	  LAB_DIR=$$dir LAB_NET=$$(( $(LAB_NET) + n - 1 )) LAB_PROFILE=$$profile $(PY) tests/lab/lab.py up || { rc=$$?; break; }; \
	done; \
	if [ $$rc = 0 ]; then TEST_LAB_DIRS=$$dirs $(PY) -m pytest -n $(TEST_LABS) --dist worksteal $(PYTEST_ARGS) tests || rc=$$?; \
	  SRE_ROLLOUT_AFTER_SUITE=1 $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) tests/browser/test_history_after_suite.py || rc=$$?; fi; \
	for dir in $${dirs//:/ }; do LAB_DIR=$$dir $(PY) tests/lab/lab.py down || rc=$$?; done; \
	exit $$rc

# A real NetBox 4.x on loopback (PostgreSQL + Redis from Debian, NetBox from PyPI under Python 3.12);
# the first run migrates for several minutes, later runs restore a cached dump (~/.cache/sre-rollout).
test-cmdb: setup
	tests/cmdb/netbox.sh up
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) tests/cmdb/test_netbox_live.py || rc=$$?; tests/cmdb/netbox.sh down; exit $$rc

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# ansible-core releases `make test-matrix` covers (the collection's requires_ansible starts at the
# first): 2.18 and 2.19 on $(PYTHON) (Debian 12: 3.11), 2.20+ on a Python >= 3.12 that
# scripts/find-python.sh finds (pyenv, python3.1x on PATH, or PYTHON_NEWEST), else skipped with a
# message. The lab release runs on MATRIX_LAB_NET (own LAB_DIR, .lab-matrix); MATRIX_LAB=0 leaves it out.
MATRIX ?= 2.18 2.19 2.21
MATRIX_LAB_NET ?= 12
MATRIX_LAB_DIR ?= $(CURDIR)/.lab-matrix
test-matrix: collection
	PYTHON=$(PYTHON) MATRIX_LAB_NET=$(MATRIX_LAB_NET) MATRIX_LAB_DIR=$(MATRIX_LAB_DIR) scripts/test-matrix.sh $(MATRIX)

# The release benchmark's quick mode (tests/bench/bench_release.py --quick): floor, release.yml and the
# classic pattern on a 6-host lab of its own (BENCH_LAB_NET, .lab-bench), started and stopped by the
# benchmark; the first run builds .venv-bench (the `ansible` package, for community.general).
# Not in `make test`: it takes a few minutes and a lab beside make test's two.
BENCH_LAB_NET ?= 14
bench-quick: setup
	LAB_DIR=$(CURDIR)/.lab-bench LAB_NET=$(BENCH_LAB_NET) $(PY) tests/bench/bench_release.py --quick

# The lint toolchain lives in its own venv (requirements-lint.txt), on the newest Python found
# (ansible-core 2.21's ansible-test), else $(PYTHON) (Debian 12: ansible-core 2.19's).
LINT_VENV := .venv-lint
LINT_PY   := $(CURDIR)/$(LINT_VENV)/bin/python
# ansible-test needs the collection at a path ending in ansible_collections/sre/rollout, with no
# git checkout above it: `make lint` copies the checkout's files (tracked and new, not ignored) there.
SANITY_ROOT ?= $(or $(TMPDIR),/tmp)/sre-rollout-sanity-$(shell id -u)$(subst /,-,$(CURDIR))
SANITY_DIR  := $(SANITY_ROOT)/ansible_collections/sre/rollout
# Every sanity test runs; a test skipped here needs its reason written next to it. None is skipped.
SANITY_SKIP :=
# ansible-test fills its venvs with a pip bootstrap script from ansible's CI file server, which a
# machine that reaches only PyPI cannot fetch; tests/lint/get_pip.py does the same from PyPI, and
# ansible-test reads it from its cache (~/.ansible/test/cache/get_pip_<pip version>.py).
ANSIBLE_TEST_CACHE := $(HOME)/.ansible/test/cache

$(LINT_VENV)/.installed: requirements-lint.txt
	@rm -rf $(LINT_VENV)
	@py=$$(scripts/find-python.sh 12 2>/dev/null || command -v $(PYTHON)); echo "lint venv on $$($$py -V) ($$py)"; \
	  $$py -m venv $(LINT_VENV)
	$(LINT_PY) -m pip install -q --upgrade pip
	$(LINT_PY) -m pip install -q -r requirements-lint.txt
	@touch $@

lint-venv: $(LINT_VENV)/.installed

# Each tool runs whatever the others found, with its time; `make lint` fails if any has a finding.
# shellcheck (a Debian package, scripts/setup-packages.sh) is needed by the sanity test of that name.
lint: packages collection lint-venv
	@export PATH="$(CURDIR)/$(LINT_VENV)/bin:$$PATH"; rc=0; \
	step() { local name=$$1 start=$$SECONDS; shift; echo "== $$name"; \
	  if "$$@"; then echo "== $$name: passed ($$((SECONDS - start)) s)"; \
	  else echo "== $$name: FAILED ($$((SECONDS - start)) s)"; rc=1; fi; }; \
	sanity() { \
	  pipver=$$($(LINT_PY) -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; \
	    from ansible_test._internal.host_configs import NativePythonConfig as c; import sys; \
	    print(g(c(version="%d.%d" % sys.version_info[:2]))["pip"])'); \
	  mkdir -p $(ANSIBLE_TEST_CACHE) && cp tests/lint/get_pip.py $(ANSIBLE_TEST_CACHE)/get_pip_$${pipver//./_}.py; \
	  rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_DIR) && \
	  git ls-files -z -co --exclude-standard -- ':!:.venv*' | tar --null -T - -cf - | tar -xf - -C $(SANITY_DIR) && \
	  (cd $(SANITY_DIR) && ansible-test sanity --venv --color no \
	    --python $$($(LINT_PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
	    $(foreach t,$(SANITY_SKIP),--skip-test $(t))); }; \
	importer() { \
	  if ! grep -q '^repository:' galaxy.yml; then \
	    echo "galaxy-importer: SKIPPED - galaxy.yml has no repository URL (the project has no public one yet) and"; \
	    echo "galaxy-importer refuses a collection without one; set repository: in galaxy.yml when it is published."; \
	    return 0; fi; \
	  out=$$(mktemp -d) && ansible-galaxy collection build --output-path $$out . >/dev/null && \
	  (cd $$out && python -m galaxy_importer.main $$out/sre-rollout-*.tar.gz) > $$out/importer.log 2>&1; \
	  code=$$?; cat $$out/importer.log; \
	  if grep -E '^(WARNING|ERROR)' $$out/importer.log >/dev/null; then code=1; fi; rm -rf $$out; return $$code; }; \
	step "ansible-test sanity" sanity; \
	step "antsibull-docs lint-collection-docs" antsibull-docs lint-collection-docs --plugin-docs .; \
	step "ansible-lint (production, strict)" env ANSIBLE_INVENTORY=$(CURDIR)/tests/lint/hosts.yml ansible-lint --strict; \
	step "galaxy-importer" importer; \
	exit $$rc

clean: lab-down
	rm -rf $(VENV) $(LINT_VENV) .venv-core-* .venv-bench .collections .pytest_cache
