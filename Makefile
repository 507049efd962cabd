# The two set-up commands of the README, and the slow suite CI runs after them.
PYTHON ?= python3

.PHONY: install test test-slow
install:        ## install adaptlab, the CPU torch build and the builtin model/embedder
	PYTHON=$(PYTHON) bash scripts/install.sh

test:           ## the default test suite (tiny random model; minutes)
	$(PYTHON) -m pytest -q

test-slow:      ## tests that need the builtin 135M model (CI runs them too)
	$(PYTHON) -m pytest -q -m slow
