# The habits (make install, test, lint) and the benchmarks and FPS regression gates (bench/, issue 8).
# See docs/benchmarks.md.
#
#   make install          the project editable with the dev extras (EXTRAS=..., TORCH=...: see below)
#   make test             bash tools/test.sh, the CI command
#   make lint             ruff check + format check, mypy (runtime/), lint-imports (tools/lint.sh)
#   make bench            build once, run every bench/ benchmark into one JSON, gate it (exit 1 on regression)
#   make bench-baseline   same run, then store its absolute figures as this machine kind's baseline
#   make bench-proof      prove the gates: pass beside a CPU hog, fail on planted regressions (tests/test_gates.py)
#   make sweep            the accuracy/speed trade-off table + plot (docs/tradeoff.*)
#   make deps-canary      newest onnxruntime/onnx/onnxsim/onnxslim beyond the pins: int8 builds (weekly)
#   make accuracy         AP/AR of small, large, dyn at fp32/fp16/int8_cpu/int8_trt on the fixtures'
#                         held-out synthetic test set (docs/accuracy.md, "Accuracy per precision")
#
# Variables: PYTHON, BENCH_ENGINES (reuse a built artifacts folder, e.g. TensorRT engines on a
# Jetson), BENCH_CONFIG, BENCH_ROUNDS (paired pipeline rounds), BENCH_CROPS (crops per round),
# BENCH_TOLERANCE (baseline), RATIOS=1 (re-base ratio gates).

PYTHON ?= python3
# make install: the project editable with EXTRAS (dev = build + eval + triton client + test tools,
# what tools/test.sh installs; runtime-only devices: make install EXTRAS= TORCH=), TORCH first
# (the CPU build on this machine kind; on a Jetson NVIDIA's wheel, so TORCH= there).
EXTRAS ?= dev
TORCH ?= torch==2.13.0
BENCH_DIR ?= .benchmarks
BENCH_JSON ?= $(BENCH_DIR)/bench.json
BENCH_CONFIG ?= dyn-r50-h32
BENCH_DATA ?= ../shared/data/coco-mini
BENCH_ROUNDS ?= 21
BENCH_CROPS ?= 24
BENCH_TOLERANCE ?= 0.3
BASELINE ?= bench/baseline.json
BENCH_ENGINES ?=
BENCH_FILES := $(sort $(wildcard bench/test_bench_*.py bench/bench_*.py))
BUILT := $(BENCH_DIR)/artifacts/$(BENCH_CONFIG)-cpu
# the trained fixture nets (bench/bench_host.py: the host's share of the pose stage, regions on)
FIXTURE := $(BENCH_DIR)/artifacts/fixture-dyn-cpu
# The RTMPose pair of bench/bench_rtmpose.py (pipeline vs raw ONNX Runtime, issue 28): fp32 only,
# always built here for the CPU (ONNX Runtime) even when BENCH_ENGINES names TensorRT engines.
RTM_CONFIG := dyn-rtm-t-m
RTM_BUILT := $(BENCH_DIR)/artifacts/$(RTM_CONFIG)-cpu
ENGINES := $(if $(BENCH_ENGINES),$(BENCH_ENGINES),$(BUILT))

.PHONY: install test lint bench bench-run bench-baseline bench-engines bench-proof sweep accuracy deps-canary

install:
	$(PYTHON) -m pip install $(TORCH) -e '.$(if $(EXTRAS),[$(EXTRAS)])'

# The CI command: every suite in its own step (stops in one line without ../shared's test data).
test:
	PYTHON=$(PYTHON) bash tools/test.sh

# The static checks tools/test.sh runs first, configured in pyproject.toml ([tool.ruff],
# [tool.mypy], [tool.importlinter]; installed by the dev extra).
lint:
	bash tools/lint.sh $(PYTHON)

# One build serves every benchmark: fp32 ONNX for the pipeline, int8_cpu variants for bench_int8.
bench-engines:
ifeq ($(BENCH_ENGINES),)
	@mkdir -p $(BENCH_DIR)
	@echo "building $(BENCH_CONFIG) for the CPU target (log: $(BENCH_DIR)/build.log) ..."
	@$(PYTHON) -m build.engines --config $(BENCH_CONFIG) --target cpu --out $(BENCH_DIR)/artifacts \
		--calib-data $(BENCH_DATA) --precision int8 --calib-method minmax --calib-max-crops 16 \
		> $(BENCH_DIR)/build.log 2>&1 || { tail -40 $(BENCH_DIR)/build.log; exit 1; }
else
	@test -f $(BENCH_ENGINES)/manifest.json || { echo "BENCH_ENGINES=$(BENCH_ENGINES) has no manifest.json"; exit 1; }
endif
	@test -f $(FIXTURE)/manifest.json || { echo "building fixture-dyn for the CPU target ..."; \
		$(PYTHON) -m build.engines --config fixture-dyn --target cpu --out $(BENCH_DIR)/artifacts \
		--calib-data $(BENCH_DATA) >> $(BENCH_DIR)/build.log 2>&1 || { tail -40 $(BENCH_DIR)/build.log; exit 1; }; }
	@mkdir -p $(BENCH_DIR)
	@echo "building $(RTM_CONFIG) (fp32) for the CPU target (log: $(BENCH_DIR)/build-rtm.log) ..."
	@$(PYTHON) -m build.engines --config $(RTM_CONFIG) --target cpu --out $(BENCH_DIR)/artifacts \
		--calib-data $(BENCH_DATA) --precision fp32 \
		> $(BENCH_DIR)/build-rtm.log 2>&1 || { tail -40 $(BENCH_DIR)/build-rtm.log; exit 1; }

# Benchmarks into one JSON. A failing benchmark test still leaves its record for the gates,
# so the gate table is printed before the run's own failure is reported.
bench-run: bench-engines
	@mkdir -p $(BENCH_DIR)
	@rm -f $(BENCH_JSON)
	DYNPOSE_BENCH_ENGINES=$(ENGINES) DYNPOSE_BENCH_INT8=$(ENGINES) DYNPOSE_BENCH_ROUNDS=$(BENCH_ROUNDS) \
		DYNPOSE_BENCH_CROPS=$(BENCH_CROPS) DYNPOSE_BENCH_FIXTURE=$(FIXTURE) DYNPOSE_BENCH_RTM=$(RTM_BUILT) \
		$(PYTHON) -m pytest $(BENCH_FILES) -m bench -q -s --benchmark-json=$(BENCH_JSON) \
		|| echo "benchmark tests failed" > $(BENCH_DIR)/pytest.failed

bench:
	@rm -f $(BENCH_DIR)/pytest.failed
	@$(MAKE) --no-print-directory bench-run
	@test -f $(BENCH_JSON) || { echo "no benchmark JSON written ($(BENCH_JSON))"; exit 1; }
	$(PYTHON) -m bench.gates $(BENCH_JSON) --baseline $(BASELINE)
	@if [ -f $(BENCH_DIR)/pytest.failed ]; then echo "FAILED: a benchmark test failed (see above)"; exit 1; fi

bench-baseline:
	@rm -f $(BENCH_DIR)/pytest.failed
	@$(MAKE) --no-print-directory bench-run
	@if [ -f $(BENCH_DIR)/pytest.failed ]; then echo "not recording: a benchmark test failed"; exit 1; fi
	$(PYTHON) -m bench.gates $(BENCH_JSON) --baseline $(BASELINE) --record --tolerance $(BENCH_TOLERANCE) \
		$(if $(RATIOS),--record-ratios)
	@echo "review and commit $(BASELINE)"

# The gates' own proof: the pipeline + decode benchmarks beside a CPU hog (must pass) and with
# a 30 % regression planted in the scheduler, in the decode, then in the credible regions
# (each must fail the right gate).
# PROOF_SELECT=EXPR narrows it (pytest -k), e.g. CI's "not decode" (see tools/test.sh).
bench-proof: bench-engines
	DYNPOSE_BENCH_ENGINES=$(ENGINES) DYNPOSE_BENCH_RTM=$(RTM_BUILT) $(PYTHON) -m pytest tests/test_gates.py -m bench -q -s -p no:cacheprovider \
		$(if $(PROOF_SELECT),-k "$(PROOF_SELECT)")

sweep:
	$(PYTHON) -m bench.sweep $(if $(BENCH_ENGINES),--engines $(BENCH_ENGINES)) --data $(BENCH_DATA)

# Builds fixture-dyn with all four precisions once (under .benchmarks/accuracy), then scores the
# held-out split; ACC_ENGINES=DIR scores a fixture-dyn folder built elsewhere.
ACC_ENGINES ?=
accuracy:
	$(PYTHON) -m bench.accuracy $(if $(ACC_ENGINES),--engines $(ACC_ENGINES))

# The newest onnxruntime / onnx / onnxsim / onnxslim, beyond pyproject.toml's caps, in a throwaway
# venv: the quantizer tests and every config's int8 build for Orin (weekly; tools/deps_canary.sh).
deps-canary:
	PYTHON=$(PYTHON) bash tools/deps_canary.sh
