# Two commands: `make demo` and `make test`. Each creates .venv and installs xjax when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench docs notebooks clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

FMNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (installed when run as root).
$(FMNIST):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null); \
	else echo "error: Fashion-MNIST missing: sudo apt-get install dataset-fashion-mnist" >&2; exit 1; fi

demo: $(STAMP) $(FMNIST)
	$(VENV)/bin/xjax explain --model efficientnet_lite0 --method saliency,guided_backprop,grad_cam --images samples --out out/demo
	$(VENV)/bin/xjax lens build --model small_cnn --dataset fashion_mnist --patch-size 12 --out out/lens
	$(VENV)/bin/xjax lens build --model efficientnet_lite0 --dataset samples --concepts 4 --images-per-class 8 --viz-steps 32 --examples 2 --out out/lens-imagenet
	@echo "Explanation report (EfficientNet-Lite0 on the sample photos): $(CURDIR)/out/demo/grid.png and one PNG per photo and method."
	@echo "Lens (concept atlas of the Fashion-MNIST CNN): open $(CURDIR)/out/lens/index.html, or run: $(VENV)/bin/xjax lens serve out/lens"
	@echo "Lens (ImageNet atlas of EfficientNet-Lite0 over crops of the bundled photos): open $(CURDIR)/out/lens-imagenet/index.html"

# pytest exits 5 when it collected no tests: that must fail, never pass.
# Two pytest workers (one per core; XLA compiles on one thread), one module per worker so module
# fixtures are built once. Fashion-MNIST's array_record cache is prepared first, not by two
# workers at once.
test: $(STAMP)
	@$(PY) -c "import os, xjax; d = xjax.data.FASHION_MNIST_DIR; os.path.exists(os.path.join(d, 't10k-images-idx3-ubyte.gz')) and [xjax.data.fashion_mnist(s) for s in ('train', 'test')]"
	@$(PY) -m pytest -n 2 --dist loadscope; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The documentation site (docs/ + the API reference from the docstrings) into site/; any
# warning fails the build (mkdocs --strict).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site
	@echo "Documentation: open $(CURDIR)/site/index.html"

# Every tutorial executed into out/notebooks/ (.ipynb with outputs, and HTML).
NB_STAMP := $(VENV)/.notebook-stamp
$(NB_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[notebook]'
	@touch $(NB_STAMP)

notebooks: $(NB_STAMP) $(FMNIST)
	$(PY) tools/build_notebooks.py --out out/notebooks

bench: $(STAMP)
	$(PY) benchmarks/models.py

clean:
	rm -rf $(VENV) out runs site .pytest_cache
