#!/usr/bin/env python3
"""Reports C++ sources that CMake builds but Bazel does not, and back.

The CMakeLists.txt files are the source of truth; the BUILD files mirror them
with explicit srcs lists, which drift when a .cc is added.  Run from anywhere:
    third_party/bazel/check_cmake_sync.py [--output_user_root=DIR]
Exits 1 when the two builds disagree about which .cc / .cu files are compiled.

CUDA: both builds compile the .cu files of kernels/cuda and the CUDA-only .cc
files (a path component starting with "cuda": cuda/ folders, cuda_*.cc) only
when nvcc is there (CMake: check_language(CUDA); Bazel: cuda_configure, i.e.
$CUDA_PATH/bin/nvcc, default /usr/local/cuda, unless TESSERA_DISABLE_CUDA=1).
Without it they are left out of the CMake side of the comparison too.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FOLDERS = ["common", "kernels", "server", "worker", "scheduler", "tools", "tests"]


def cmake_sources():
    found = set()
    for folder in FOLDERS:
        path = os.path.join(ROOT, folder, "CMakeLists.txt")
        if not os.path.exists(path):
            continue
        text = re.sub(r"#[^\n]*", "", open(path).read())
        for tok in re.findall(r"[\w./-]+\.(?:cc|cu)\b", text):
            found.add(os.path.normpath(os.path.join(folder, tok)))
    return found


def bazel_sources(extra):
    out = subprocess.run(
        ["bazel"] + extra + ["query", "--keep_going", "--output=label",
                             'kind("source file", deps(//...)) intersect //...:*'],
        cwd=ROOT, capture_output=True, text=True)
    found = set()
    for line in out.stdout.split():
        m = re.match(r"^//([^:]*):(.*)$", line)
        if m and re.search(r"\.(cc|cu)$", m.group(2)):
            found.add(os.path.normpath(os.path.join(m.group(1), m.group(2))))
    return found


def have_cuda():
    if os.environ.get("TESSERA_DISABLE_CUDA", "0") not in ("", "0"):
        return False
    return os.path.exists(os.path.join(os.environ.get("CUDA_PATH", "/usr/local/cuda"), "bin", "nvcc"))


def cuda_only(path):
    return path.endswith(".cu") or any(p.startswith("cuda") for p in path.split(os.sep))


def main():
    extra = [a for a in sys.argv[1:] if a.startswith("--output_user_root")]
    cm, bz = cmake_sources(), bazel_sources(extra)
    if not have_cuda():
        cm = {f for f in cm if not cuda_only(f)}
    only_cmake = sorted(cm - bz)
    only_bazel = sorted(bz - cm)
    for f in only_cmake:
        print("in CMake, missing from Bazel:", f)
    for f in only_bazel:
        print("in Bazel, not in CMake:      ", f)
    if not only_cmake and not only_bazel:
        print("CMake and Bazel compile the same %d .cc/.cu files (%d .cu)"
              % (len(cm), len([f for f in cm if f.endswith(".cu")])))
    return 1 if only_cmake or only_bazel else 0


if __name__ == "__main__":
    sys.exit(main())
