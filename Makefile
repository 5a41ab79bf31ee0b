# Each target sets itself up: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest-xdist processes: most tests wait on servers, streams and subprocesses, so two share two cores well
TEST_WORKERS ?= 2

.PHONY: demo test test-fast bench edge lint system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[train,dev,ray]'
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/avfuse demo

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# the tests not marked slow, without the linters: for a quick check while working
test-fast: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

DEMO_MODEL := demo-out/model.onnx

$(DEMO_MODEL): | $(STAMP)
	$(BIN)/avfuse demo

bench: $(STAMP) system-deps $(DEMO_MODEL)
	$(BIN)/avfuse bench decode --real
	$(BIN)/avfuse bench run $(DEMO_MODEL) --real --checkpoint demo-out/run/model.pt
	$(BIN)/avfuse bench model $(DEMO_MODEL) --checkpoint demo-out/run/model.pt --threads 1
	$(BIN)/avfuse bench live $(DEMO_MODEL) --seconds 20

# make edge: the fp32 and int8 files on an emulated ARM64 Debian (qemu-user + debootstrap, cached in
# .edge-cache/), installed offline from the aarch64 wheels, compared record by record with this machine;
# writes MODEL.edge.json beside each file (avfuse inspect shows it). Root only; not part of make test.
#   make edge EDGE_MODEL=my.onnx EDGE_INT8=my.int8.onnx EDGE_CPUS="cortex-a72 max"
EDGE_MODEL ?= $(DEMO_MODEL)
EDGE_INT8  ?= demo-out/model.int8.onnx

demo-out/model.int8.onnx: | $(DEMO_MODEL)
	mkdir -p .edge-cache/export
	$(BIN)/avfuse export demo-out/run/model.pt -o .edge-cache/export/model.onnx --int8 --calib demo-out/data/manifest.csv
	cp .edge-cache/export/model.int8.onnx $@

edge: $(STAMP) $(EDGE_MODEL) $(EDGE_INT8)
	bash scripts/edge.sh $(EDGE_MODEL) $(EDGE_INT8)

# ruff over the tree, mypy over avfuse.stream (its settings: [tool.mypy] in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
