"""Compiler flags shared by every Tessera BUILD file (mirrors the top-level CMakeLists.txt)."""

# add_compile_options(-Wall -Wextra -fno-math-errno) in
# kernels/compile_options.cmake; -std=c++17 comes from .bazelrc.
TESSERA_COPTS = ["-Wall", "-Wextra", "-fno-math-errno"]

# Generated protobuf/gRPC code is compiled with -w, as in proto/CMakeLists.txt.
GENERATED_COPTS = ["-w"]
