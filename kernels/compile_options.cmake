# Options and host warning flags shared by the top-level build and the
# standalone kernels build (`cmake -S kernels`, for GPU machines without the
# rest of the stack). nvcc gets the same warnings for the host side of .cu
# files (set in kernels/CMakeLists.txt), since it does not take -Wall itself.
option(TESSERA_WERROR "Treat compiler warnings as errors" OFF)
option(TESSERA_ENABLE_CUDA "Build the CUDA kernels when nvcc is found" ON)
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wall> $<$<COMPILE_LANGUAGE:CXX>:-Wextra>)
# Nothing reads errno after a math call; without it GCC keeps a scalar call
# to sqrtf (for errno) in every loop that takes a square root, so the
# Adam/Adagrad steps and codecs would not vectorize. Results are unchanged.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fno-math-errno>)
if(TESSERA_WERROR)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
