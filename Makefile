# Set-up and entry points for machines without a ROS 2 install.
# Every target reuses .venv; stamps make a second `make setup` a no-op.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMPS := $(VENV)/.stamps
PYTEST_ARGS ?=
BENCH_ARGS ?=

VISION_MSGS_SRC := $(wildcard ros_deps/vision_msgs/msg/*.msg) \
	ros_deps/vision_msgs/CMakeLists.txt ros_deps/vision_msgs/package.xml \
	ros_deps/vision_msgs/pyproject.toml

.PHONY: setup test demo bench clean-venv

setup: $(STAMPS)/package

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	@# colcon must never crawl into the environment's share/*/package.xml
	touch $(VENV)/COLCON_IGNORE
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/requirements: requirements/ros.txt requirements/python.txt $(STAMPS)/venv
	$(PIP) install -q -r requirements/ros.txt -r requirements/python.txt
	touch $@

# vision_msgs: the real package when one is importable (a ROS install),
# otherwise the wire-compatible copy in ros_deps/ built with the wheels' rosidl.
$(STAMPS)/vision_msgs: $(VISION_MSGS_SRC) $(STAMPS)/requirements
	@if $(PIP) show -q ros-vision-msgs-compat >/dev/null 2>&1 \
	    || ! $(PY) -c "import vision_msgs.msg" >/dev/null 2>&1; then \
	  echo "building ros_deps/vision_msgs into $(VENV)"; \
	  $(PIP) install -q --no-build-isolation \
	    -C build-dir=$(abspath $(VENV))/build/vision_msgs ./ros_deps/vision_msgs; \
	else \
	  echo "vision_msgs is already installed: using it"; \
	fi
	touch $@

$(STAMPS)/package: setup.py setup.cfg $(STAMPS)/vision_msgs
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	@echo "make demo: the demo needs the node (issue 'The ROS 2 node') and the demo model; not implemented yet." >&2
	@exit 2

# The node's overhead first, so the engine's speedup line comes last.
bench: setup
	$(PY) bench/bench_node.py $(BENCH_ARGS)
	$(PY) bench/bench_engine.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
