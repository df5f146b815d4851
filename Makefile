# Two commands: `make demo` and `make test`. Each creates .venv and installs xjax when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xjax explain --model efficientnet_lite0 --method saliency,guided_backprop,grad_cam --images samples --out out/demo
	@echo "Figures written to $(CURDIR)/out/demo: one PNG per photo and method, and grid.png."

# pytest exits 5 when it collected no tests: that must fail, never pass.
test: $(STAMP)
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/models.py

clean:
	rm -rf $(VENV) out runs .pytest_cache
