# Turns CUDA on when nvcc is found and TESSERA_ENABLE_CUDA is set; sets
# TESSERA_HAVE_CUDA. Included by the top-level CMakeLists.txt and by
# kernels/CMakeLists.txt when kernels/ is built on its own.
if(TESSERA_ENABLE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)  # must come before enable_language(CUDA)
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    find_package(CUDAToolkit REQUIRED)
    set(TESSERA_HAVE_CUDA ON)
  endif()
endif()
message(STATUS "Tessera CUDA kernels: ${TESSERA_HAVE_CUDA}")
