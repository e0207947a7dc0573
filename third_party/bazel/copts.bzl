"""Compiler flags shared by every Tessera BUILD file (mirrors the top-level CMakeLists.txt)."""

# add_compile_options(-Wall -Wextra); -std=c++17 comes from .bazelrc.
TESSERA_COPTS = ["-Wall", "-Wextra"]

# Generated protobuf/gRPC code is compiled with -w, as in proto/CMakeLists.txt.
GENERATED_COPTS = ["-w"]
