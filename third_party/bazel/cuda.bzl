"""cuda_library: .cu files compiled by nvcc in genrules (Bazel 4 has no CUDA rules).

Each .cu becomes one object file (`nvcc -c`, -fPIC, sm_80 and sm_90 SASS plus
compute_90 PTX: the CMAKE_CUDA_ARCHITECTURES "80;90" of the CMake build), and a
cc_library links the objects with cudart and cuBLAS from @local_cuda.  Only
call it when HAVE_CUDA (@local_cuda//:defs.bzl) is True.
"""

load("@local_cuda//:defs.bzl", "NVCC")

_NVCC_FLAGS = " ".join([
    "-std=c++17",
    "-O3",
    "-DNDEBUG",
    "-Xcompiler=-fPIC,-Wall,-Wextra",
    "-Werror=all-warnings",
    "-I.",
    "-gencode arch=compute_80,code=sm_80",
    "-gencode arch=compute_90,code=[sm_90,compute_90]",
])

def cuda_library(name, srcs, hdrs = [], private_hdrs = [], cu_inputs = [], deps = [], **kwargs):
    """A cc_library whose code comes from nvcc-compiled .cu files.

    Args:
      name: the cc_library.
      srcs: .cu files, one object each.
      hdrs: public headers of the library (plain C++).
      private_hdrs: headers only the .cu files include.
      cu_inputs: other headers the .cu files include (from `deps`); a genrule
        sees only the files it lists.
      deps: cc_library targets the users of this library also need.
      **kwargs: passed to the cc_library.
    """
    objs = []
    for src in srcs:
        obj = name + "_objs/" + src.replace(".cu", ".o")
        native.genrule(
            name = name + "_" + src.replace("/", "_").replace(".cu", "_o"),
            srcs = [src] + hdrs + private_hdrs + cu_inputs,
            outs = [obj],
            cmd = NVCC + " " + _NVCC_FLAGS + " -c $(location " + src + ") -o $@",
            message = "nvcc " + src,
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["@local_cuda//:cudart", "@local_cuda//:cublas"],
        **kwargs
    )
