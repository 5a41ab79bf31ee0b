# Each target sets itself up: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[train,dev]'
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/avfuse demo

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

DEMO_MODEL := demo-out/model.onnx

$(DEMO_MODEL): | $(STAMP)
	$(BIN)/avfuse demo

bench: $(STAMP) system-deps $(DEMO_MODEL)
	$(BIN)/avfuse bench decode --real
	$(BIN)/avfuse bench run $(DEMO_MODEL) --real --checkpoint demo-out/run/model.pt
	$(BIN)/avfuse bench model $(DEMO_MODEL) --checkpoint demo-out/run/model.pt --threads 1
	$(BIN)/avfuse bench live $(DEMO_MODEL) --seconds 20

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
