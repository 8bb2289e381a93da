# reservoir_add_driver(<name> SOURCES ... LIBRARIES ...): a driver library reservoir_<name>
# (alias reservoir::<name>) linked into reservoir::reservoir as a whole archive, so that the
# driver's self-registration (a static initialiser nothing else refers to) is never dropped by
# the linker.
function(reservoir_add_driver name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  add_library(reservoir_${name} STATIC ${ARG_SOURCES})
  add_library(reservoir::${name} ALIAS reservoir_${name})
  target_include_directories(reservoir_${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(reservoir_${name} PUBLIC reservoir::core PRIVATE ${ARG_LIBRARIES})
  if(TARGET reservoir_driver_common)
    target_link_libraries(reservoir_${name} PRIVATE reservoir_driver_common)
    target_compile_definitions(reservoir_${name} PRIVATE RESERVOIR_HAVE_DRIVER_COMMON=1)
  endif()
  target_link_libraries(reservoir INTERFACE "$<LINK_LIBRARY:WHOLE_ARCHIVE,reservoir_${name}>")
endfunction()
