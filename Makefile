# Two commands after cloning: `make demo` runs the main job, `make test` runs the tests.
# Both create the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned as a pair: mismatched builds fail to import.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
export NO_ALBUMENTATIONS_UPDATE := 1
# Test files run in parallel, one per core (pytest-xdist); a file's tests stay in one
# worker so its trained fixtures are built once. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: venv browser demo test test-fast lint bench

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/cleaner demo --out cleaner-demo

# The review page's browser test drives Debian's chromium (Playwright's own browser
# download does not work offline); without it that one test is skipped.
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser test will be skipped"

test: venv browser
	$(PYTEST)

test-fast: venv
	$(PYTEST) -m "not slow"

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m benchmarks.bench_oof_mnist
	$(BIN)/python -m benchmarks.bench_flag_mnist --set train.epochs=8
	$(BIN)/python -m benchmarks.bench_flag_speed
	$(BIN)/python -m benchmarks.bench_retrain_mnist
	$(BIN)/python -m benchmarks.bench_ray_folds --set train.epochs=8
	$(BIN)/python -m benchmarks.bench_image_check

# Label Studio for the round trip against a real one (benchmarks/labelstudio_roundtrip.py, run
# by .ci/run): its own environment, as label-studio pins Django and many others, with its
# dependencies pinned as they were tested (benchmarks/labelstudio-constraints.txt).
LS_VENV := .venv-labelstudio
LABEL_STUDIO_PIN := label-studio==1.23.2

.PHONY: labelstudio-venv labelstudio-roundtrip

$(LS_VENV)/.installed: benchmarks/labelstudio-constraints.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet $(LABEL_STUDIO_PIN) \
		-c benchmarks/labelstudio-constraints.txt
	touch $@

labelstudio-venv: $(LS_VENV)/.installed

labelstudio-roundtrip: venv labelstudio-venv
	$(BIN)/python -m benchmarks.labelstudio_roundtrip
