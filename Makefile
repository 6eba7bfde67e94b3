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
# lab 1 is the default lab ($(LAB_DIR), LAB_NET $(LAB_NET)), lab N is .lab-N on LAB_NET LAB_NET+N-1.
TEST_LABS ?= 2
export LAB_HOSTS LAB_DIR
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup venv packages collection lab-up lab-down lab-status demo test test-unit test-cmdb lint clean

help:
	@echo "make demo        set everything up and run a release in the lab"
	@echo "make test        set everything up and run all tests (lab up, pytest, lab down)"
	@echo "make setup       .venv + Debian packages + collection link"
	@echo "make lab-up      start the lab (LAB_HOSTS=$(LAB_HOSTS)); make lab-down stops it"
	@echo "make test-cmdb   the CMDB plugin against a real NetBox (slow the first time)"
	@echo "make lint        ansible-lint (production profile)"

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
	  LAB_DIR=$$dir LAB_NET=$$(( $(LAB_NET) + n - 1 )) $(PY) tests/lab/lab.py up || { rc=$$?; break; }; \
	done; \
	if [ $$rc = 0 ]; then TEST_LAB_DIRS=$$dirs $(PY) -m pytest -n $(TEST_LABS) --dist worksteal $(PYTEST_ARGS) tests || rc=$$?; fi; \
	for dir in $${dirs//:/ }; do LAB_DIR=$$dir $(PY) tests/lab/lab.py down || rc=$$?; done; \
	exit $$rc

# A real NetBox 4.x on loopback (PostgreSQL + Redis from Debian, NetBox from PyPI under Python 3.12);
# the first run migrates for several minutes, later runs restore a cached dump (~/.cache/sre-rollout).
test-cmdb: setup
	tests/cmdb/netbox.sh up
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) tests/cmdb/test_netbox_live.py || rc=$$?; tests/cmdb/netbox.sh down; exit $$rc

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ansible-lint

clean: lab-down
	rm -rf $(VENV) .collections .pytest_cache
