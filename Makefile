# Set-up and entry points for machines without a ROS 2 install.
# Every target reuses .venv; stamps make a second `make setup` a no-op.
# bash with pipefail: a failing command piped into tee fails the target.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMPS := $(VENV)/.stamps
PYTEST_ARGS ?=
BENCH_ARGS ?=
# The ROS packages of this repository, one folder each (colcon's layout).
PKG := clip_perception
# Python leaves the working directory off sys.path (3.11+): from this root the
# package's folder clip_perception/ would otherwise shadow the Python package.
export PYTHONSAFEPATH := 1

VISION_MSGS_SRC := $(wildcard ros_deps/vision_msgs/msg/*.msg) ros_deps/ros_wheels.cmake \
	ros_deps/vision_msgs/CMakeLists.txt ros_deps/vision_msgs/package.xml \
	ros_deps/vision_msgs/pyproject.toml
INTERFACES := clip_perception_interfaces
INTERFACES_SRC := $(wildcard $(INTERFACES)/msg/*.msg $(INTERFACES)/srv/*.srv) \
	ros_deps/ros_wheels.cmake $(INTERFACES)/CMakeLists.txt $(INTERFACES)/package.xml \
	$(INTERFACES)/pyproject.toml

.PHONY: setup test test-fast lint demo demo-3d eval eval-localizers bench soak \
	train-demo-model train-owl-demo-model clean-venv

setup: $(STAMPS)/package

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	@# colcon must never crawl into the environment's share/*/package.xml
	touch $(VENV)/COLCON_IGNORE
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/requirements: requirements/ros.txt requirements/python.txt $(STAMPS)/venv
	$(PIP) install -q -r requirements/ros.txt -r requirements/python.txt
	touch $@

# An interface package built with the wheels' rosidl into $(VENV) (scikit-build-core,
# pyproject.toml) unless a ROS install already provides it:
#   $(call interface_package,FOLDER,PIP_DISTRIBUTION,PYTHON_IMPORT,PIP_OPTIONS)
# (PYTHON_IMPORT imports a generated type: the source folder itself imports as a
# namespace package from here.)
define interface_package
	@if $(PIP) show -q $(2) >/dev/null 2>&1 \
	    || ! $(PY) -c "$(strip $(3))" >/dev/null 2>&1; then \
	  echo "building $(1) into $(VENV)"; \
	  $(PIP) install -q --no-build-isolation \
	    -C build-dir=$(abspath $(VENV))/build/$(notdir $(1)) $(4) ./$(1); \
	else \
	  echo "$(notdir $(1)) is already installed: using it"; \
	fi
	touch $@
endef

# vision_msgs: the real package when one is importable (a ROS install),
# otherwise the wire-compatible copy in ros_deps/.
$(STAMPS)/vision_msgs: $(VISION_MSGS_SRC) $(STAMPS)/requirements
	$(call interface_package,ros_deps/vision_msgs,ros-vision-msgs-compat,\
	    from vision_msgs.msg import Detection2D)

# This repository's services (a normal ament_cmake package for colcon).
$(STAMPS)/interfaces: $(INTERFACES_SRC) $(STAMPS)/vision_msgs
	$(call interface_package,$(INTERFACES),ros-clip-perception-interfaces,\
	    from $(INTERFACES).srv import Detect,-C cmake.define.ROS_WHEELS_CMAKE=$(abspath ros_deps/ros_wheels.cmake))

$(STAMPS)/package: $(PKG)/setup.py $(PKG)/setup.cfg $(STAMPS)/interfaces
	$(PIP) install -q --no-deps --no-build-isolation -e ./$(PKG)
	touch $@

# Everything (what CI runs); test-fast leaves out the slow tier: nodes over DDS,
# processes, training runs (see pytest.ini); lint runs the linters' tests only.
test: setup
	cd $(PKG) && $(abspath $(PY)) -m pytest $(PYTEST_ARGS)

test-fast: setup
	cd $(PKG) && $(abspath $(PY)) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	cd $(PKG) && $(abspath $(PY)) -m pytest -m linter $(PYTEST_ARGS)

demo: setup
	$(PY) -m clip_perception.demo

# The demo with depth: a synthetic video whose bag carries aligned depth and camera
# info; the node runs with depth and tracking and prints each tool's position in metres.
# A video to show, not a measurement (make eval measures): of seeds 6101-6105 the
# bundled model found 0, 5, 0, 11 and 0 of the tools; this one shows placements.
DEMO_3D ?= build/demo_3d
DEMO_3D_OUT ?= demo_output/3d
demo-3d: setup
	$(PY) -m clip_perception.tools.sequences $(DEMO_3D) --sequences 1 --frames 20 --seed 6104
	$(PY) -m clip_perception.demo --bag $(DEMO_3D)/sequence_0 --out $(DEMO_3D_OUT)

# Evaluation of the bundled demo model on two scene sets, 300 scenes and 100
# empty benches each, from seeds never used in training: its own drawing style
# (the training generator, synthetic.py) and an independent held-out style
# (heldout_style.py, which nothing in training imports); then tracking on synthetic
# videos (a line `tracking: mota: M idf1: I id_switches: S`). The last two lines:
#   eval own: scene_accuracy: A ap50: P ap50_95: Q fp_per_blank: F
#   eval heldout: scene_accuracy: A ap50: P ap50_95: Q fp_per_blank: F
EVAL_DIR ?= build/eval
# The sizes of the sets (smaller only for a quick check of the command: the figures
# in the README and model cards are from these defaults).
EVAL_SCENES ?= 300
EVAL_BLANK ?= 100
EVAL_CROPS ?= 2000
EVAL_FRAMES ?= 30
DEMO_MODEL ?= $(PKG)/models/workbench_demo
EVAL := $(PY) -m clip_perception.eval --model $(DEMO_MODEL) --params $(PKG)/config/demo.yaml
eval: setup $(EVAL_DIR)/crops/captions.jsonl $(EVAL_DIR)/own/annotations.json \
		$(EVAL_DIR)/heldout/annotations.json $(EVAL_DIR)/tracking/truth.json
	$(EVAL) --crops $(EVAL_DIR)/crops --scenes $(EVAL_DIR)/own --json $(EVAL_DIR)/own.json \
	    | tee $(EVAL_DIR)/own.txt
	$(EVAL) --scenes $(EVAL_DIR)/heldout --json $(EVAL_DIR)/heldout.json \
	    | tee $(EVAL_DIR)/heldout.txt
	$(PY) -m clip_perception.tools.evaluate_tracking --model $(DEMO_MODEL) \
	    --params $(PKG)/config/demo.yaml --sequences $(EVAL_DIR)/tracking \
	    --json $(EVAL_DIR)/tracking.json
	@echo "eval own: $$(tail -n 1 $(EVAL_DIR)/own.txt)"
	@echo "eval heldout: $$(tail -n 1 $(EVAL_DIR)/heldout.txt)"

# Regenerated when the generators, the demo windows or the model's input size
# (model_building.py) change.
DATA_SOURCES := $(PKG)/clip_perception/tools/synthetic.py $(PKG)/clip_perception/tools/make_dataset.py
$(EVAL_DIR)/crops/captions.jsonl: $(DATA_SOURCES) $(PKG)/config/demo.yaml \
		$(PKG)/clip_perception/tools/model_building.py | setup
	$(PY) -m clip_perception.make_dataset crops $(EVAL_DIR)/crops --count $(EVAL_CROPS) --seed 2001

$(EVAL_DIR)/own/annotations.json: $(DATA_SOURCES) | setup
	$(PY) -m clip_perception.make_dataset scenes $(EVAL_DIR)/own --count $(EVAL_SCENES) \
	    --blank $(EVAL_BLANK) --seed 3001

# Three 30-frame videos (10 Hz) of tools that slide, turn, leave and come back, with
# their identities: the tracking line (tracking: mota: M idf1: I id_switches: S).
$(EVAL_DIR)/tracking/truth.json: $(DATA_SOURCES) $(PKG)/clip_perception/tools/sequences.py \
		| setup
	$(PY) -m clip_perception.tools.sequences $(EVAL_DIR)/tracking --sequences 3 \
	    --frames $(EVAL_FRAMES) --seed 6001

$(EVAL_DIR)/heldout/annotations.json: $(PKG)/clip_perception/tools/heldout_style.py | setup
	$(PY) -m clip_perception.tools.heldout_style $(EVAL_DIR)/heldout --count $(EVAL_SCENES) \
	    --blank $(EVAL_BLANK) --seed 5001

# The localizers side by side on make eval's scene sets, with the bundled demo models
# (the demo CLIP for windows, dense and gradcam; the OWL-ViT demo detector for owlvit):
# one line per localizer and style,
#   localizer: NAME style: own|heldout scene_accuracy: A ap50: P ap50_95: Q fp_per_blank: F fps: R gflops: G
# Each run is a parameter file the node can start with (config/demo.yaml is windows).
LOCALIZER_RUNS := --run windows $(PKG)/config/demo.yaml --run dense $(PKG)/config/demo_dense.yaml \
	--run gradcam $(PKG)/config/demo_gradcam.yaml --run owlvit $(PKG)/config/demo_owlvit.yaml
eval-localizers: setup $(EVAL_DIR)/own/annotations.json $(EVAL_DIR)/heldout/annotations.json
	$(PY) -m clip_perception.tools.compare_localizers $(LOCALIZER_RUNS) \
	    --scenes own $(EVAL_DIR)/own --scenes heldout $(EVAL_DIR)/heldout \
	    --json $(EVAL_DIR)/localizers.json

# Training the demo model on the domain-randomized generator (synthetic.py): the
# demo ViT (chosen over a wider ViT and a ConvNeXt tower at matched CPU time, see
# docs/training.md) trained from scratch (the first 4,500 of 12,000 steps at
# 32 px), then fine-tuned on the windows it gets wrong in fresh scenes
# (hard-example mining) mixed with fresh ordinary crops; last, its box regressor
# is fitted on annotated scenes. About 2.5 hours on 2 CPU cores (the bundled weights:
# stage 1 129 minutes, the rest about 20; models/workbench_demo/MODEL.md); a stopped
# stage 1 resumes from its checkpoint.
TRAIN_DIR ?= build/train
# TRAIN_QUICK=1: every step of a recipe on a handful of examples (a test runs it so,
# into other folders); the figures come only from the full sizes.
TRAIN_QUICK ?=
size = $(if $(TRAIN_QUICK),$(2),$(1))
train-demo-model: setup
	$(PY) -m clip_perception.make_dataset crops $(TRAIN_DIR)/train --count $(call size,150000,64) --seed 1
	$(PY) -m clip_perception.make_dataset crops $(TRAIN_DIR)/probe --count $(call size,2000,16) --seed 900001
	$(PY) -m clip_perception.train --data $(TRAIN_DIR)/train --eval-data $(TRAIN_DIR)/probe \
	    --out $(TRAIN_DIR)/stage1 --steps $(call size,12000,4) --low-res 32 \
	    --low-res-steps $(call size,4500,2) --eval-every $(call size,500,2) \
	    --batch-size $(call size,128,16) --lr 7e-4 --seed 0 \
	    $(if $(wildcard $(TRAIN_DIR)/stage1/checkpoint/trainer.json),--resume)
	$(PY) -m clip_perception.make_dataset crops $(TRAIN_DIR)/fresh --count $(call size,6000,32) --seed 2
	$(PY) -m clip_perception.make_dataset hard $(TRAIN_DIR)/hard --count $(call size,2000,16) --seed 3 \
	    --model $(TRAIN_DIR)/stage1 --params $(PKG)/config/demo.yaml
	$(PY) -m clip_perception.train --init $(TRAIN_DIR)/stage1 \
	    --data $(TRAIN_DIR)/fresh $(TRAIN_DIR)/hard --eval-data $(TRAIN_DIR)/probe \
	    --out $(DEMO_MODEL) --steps $(call size,300,2) --eval-every $(call size,100,2) \
	    --batch-size $(call size,128,16) --lr 2e-4 --warmup $(call size,20,1) --seed 0
	$(PY) -m clip_perception.make_dataset scenes $(TRAIN_DIR)/boxes --count $(call size,1000,8) --seed 4
	$(PY) -m clip_perception.fit_boxes --model $(DEMO_MODEL) --scenes $(TRAIN_DIR)/boxes \
	    --params $(PKG)/config/demo.yaml

# The OWL-ViT demo detector (localizer owlvit): the bundled demo CLIP as its
# backbone, heads and backbone trained on randomized scenes with DETR's
# set-prediction loss with a one-to-many assignment (clip_perception/tools/train_owl.py).
# About 55 minutes on 2 CPU cores; see models/owl_demo/MODEL.md. A stopped run
# resumes from its checkpoint.
OWL_DIR ?= build/owl
OWL_DEMO_MODEL ?= $(PKG)/models/owl_demo
train-owl-demo-model: setup
	$(PY) -m clip_perception.make_dataset scenes $(OWL_DIR)/scenes --count $(call size,4000,8) \
	    --blank $(call size,400,2) --seed 11
	$(PY) -m clip_perception.train_owl --init $(DEMO_MODEL) --data $(OWL_DIR)/scenes \
	    --out $(OWL_DEMO_MODEL) --image-size 160 --steps $(call size,6000,2) \
	    --batch-size $(call size,16,4) --centre-radius 0.25 --seed 0 \
	    $(if $(wildcard $(OWL_DEMO_MODEL)/checkpoint/trainer.json),--resume)

# The node's overhead first, then the engine's speedup line; the node as a process (how
# fast it stops while frames flow at 30 Hz, how many large best-effort frames arrive).
# Last, the memory's search (brute force vs faiss at 10k, 100k, 1M vectors; minutes:
# faiss builds an HNSW graph over 1M vectors): the README's scale table. Then the memory
# stores (Milvus Lite and a Milvus server against exact and faiss IVF at 100k and 1M
# regions, what the embedded store costs a robot, bag indexing with 1 and 2 workers):
# the README's fleet memory table (about 30 minutes on 2 cores).
# BENCH_ARGS=--quick: every script in a minute or two (a test runs it so).
# PYTHONPATH: the scripts share helpers (PYTHONSAFEPATH leaves their folder off sys.path).
bench: setup
	PYTHONPATH=bench $(PY) bench/bench_node.py $(BENCH_ARGS)
	PYTHONPATH=bench $(PY) bench/bench_engine.py $(BENCH_ARGS)
	PYTHONPATH=bench $(PY) bench/bench_process.py $(BENCH_ARGS)
	PYTHONPATH=bench $(PY) bench/bench_memory.py $(BENCH_ARGS)
	PYTHONPATH=bench $(PY) bench/bench_memory_store.py $(BENCH_ARGS)

# The node as a process under a mixed hostile stream for SOAK_SECONDS (bad frames of
# every kind, label storms, 50-caller service bursts, tracking toggles, depth at 100 Hz);
# fails unless it still answers, answered every request and kept its memory within 20%
# of what it was after the first minute (SOAK_SECONDS/2 in a shorter run).
SOAK_SECONDS ?= 600
soak: setup
	$(PY) bench/hostile_soak.py --seconds $(SOAK_SECONDS)

clean-venv:
	rm -rf $(VENV)
