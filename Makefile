# Tessera: the two commands of the README.
#   make demo   install what is missing, build, run the main job on a local cluster
#   make test   install what is missing, build, run ctest and the Bazel tests

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
WERROR ?= OFF
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Everything comes from Debian's packages (Debian 12 "bookworm").
APT_PACKAGES := g++ cmake ninja-build pkg-config make \
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
  libabsl-dev libspdlog-dev libgtest-dev libgmock-dev libyaml-cpp-dev \
  libsqlite3-dev zlib1g-dev dataset-fashion-mnist
BAZEL_PACKAGES := bazel-bootstrap bazel-rules-java

.PHONY: setup setup-bazel build demo test test-cmake test-bazel clean

setup:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

setup-bazel:
	@missing=$$(for p in $(BAZEL_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: setup
	cmake -G Ninja -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DTESSERA_WERROR=$(WERROR)
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	$(BUILD_DIR)/bin/tessera local --out=tessera-out

test-cmake: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

test-bazel: setup setup-bazel
	TESSERA_BAZEL_SKIP_SLOW=1 tools/bazel_test.sh

test: test-cmake test-bazel

clean:
	rm -rf $(BUILD_DIR) tessera-out
