# Building an interface package against the ROS 2 wheels from PyPI, installed in
# a Python virtual environment instead of a ROS install. Two things differ:
#  1. the ament index is only found through AMENT_PREFIX_PATH, which nothing
#     sets: point it (and CMAKE_PREFIX_PATH) at the environment's prefix;
#  2. the wheels' exported Python targets name include directories of the
#     machine that built them; CMake refuses to generate with missing paths, so
#     replace_missing_include_dirs() (call it after rosidl_generate_interfaces)
#     replaces them by this Python's and NumPy's include directories.
# Included before find_package(ament_cmake); a ROS install never includes it.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c "import sys; print(sys.prefix)"
  OUTPUT_VARIABLE ROS_WHEELS_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT "$ENV{AMENT_PREFIX_PATH}" MATCHES "${ROS_WHEELS_PREFIX}")
  set(ENV{AMENT_PREFIX_PATH} "${ROS_WHEELS_PREFIX}:$ENV{AMENT_PREFIX_PATH}")
endif()
list(APPEND CMAKE_PREFIX_PATH "${ROS_WHEELS_PREFIX}")

function(replace_missing_include_dirs)
  get_property(targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(fixed "")
    set(changed FALSE)
    foreach(dir IN LISTS dirs)
      if(dir MATCHES "^\\$<" OR EXISTS "${dir}")
        list(APPEND fixed "${dir}")
      else()
        set(changed TRUE)
      endif()
    endforeach()
    if(changed)
      list(APPEND fixed ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      list(REMOVE_DUPLICATES fixed)
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${fixed}")
    endif()
  endforeach()
endfunction()
