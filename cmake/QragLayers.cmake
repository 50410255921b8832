# The layers of qrag, enforced by the build (docs/architecture.md "Layers").
#
# Every library of server/, kernels/, client/ and proto/ is declared with qrag_layer_library (or, for one that
# is not built in this configuration, qrag_declare_layer), naming the folders or files it OWNS and the layer
# libraries it DEPENDS on. The declared graph is the one source of truth: the libraries link exactly their
# DEPENDS (so an upward call does not link), and cmake/check_layers.py, run on every build (target
# qrag_layer_check) and by ctest (layers_check), fails when a file includes a header of a library that is
# neither its own nor below it.

# qrag_declare_layer(NAME OWNS path... [DEPENDS lib...]): records a layer without building anything.
# OWNS: folders (every file under them) or files / globs (server/common/config_file.*), relative to the
# project root; a file belongs to its most specific owner.
function(qrag_declare_layer name)
  cmake_parse_arguments(ARG "" "" "OWNS;DEPENDS" ${ARGN})
  set_property(GLOBAL APPEND PROPERTY QRAG_LAYERS ${name})
  set_property(GLOBAL PROPERTY QRAG_LAYER_${name}_OWNS "${ARG_OWNS}")
  set_property(GLOBAL PROPERTY QRAG_LAYER_${name}_DEPENDS "${ARG_DEPENDS}")
endfunction()

# qrag_layer_library(NAME [SOURCES file...] OWNS path... [DEPENDS lib...] [OPTIONAL_DEPENDS lib...]
#                    [PUBLIC item...] [PRIVATE item...])
# A static library (an INTERFACE one without SOURCES) linking its DEPENDS publicly, plus the other PUBLIC /
# PRIVATE link items (system packages). OPTIONAL_DEPENDS are layer libraries linked only when this
# configuration builds them (qrag_cuda), and are part of the declared graph either way.
function(qrag_layer_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;OWNS;DEPENDS;OPTIONAL_DEPENDS;PUBLIC;PRIVATE" ${ARGN})
  qrag_declare_layer(${name} OWNS ${ARG_OWNS} DEPENDS ${ARG_DEPENDS} ${ARG_OPTIONAL_DEPENDS})
  set(optional "")
  foreach(dep IN LISTS ARG_OPTIONAL_DEPENDS)
    list(APPEND optional "$<TARGET_NAME_IF_EXISTS:${dep}>")
  endforeach()
  if(ARG_SOURCES)
    add_library(${name} STATIC ${ARG_SOURCES})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
    if(QRAG_NATIVE)
      target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
    endif()
    target_link_libraries(${name} PUBLIC ${ARG_DEPENDS} ${optional} ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARG_DEPENDS} ${optional} ${ARG_PUBLIC})
  endif()
endfunction()

# Writes the declared graph to ${PROJECT_BINARY_DIR}/qrag_layers.json and adds the check (a target of the
# default build, so an upward include fails `cmake --build`). Call once, after every layer is declared.
function(qrag_finish_layers)
  get_property(layers GLOBAL PROPERTY QRAG_LAYERS)
  set(json "{\n")
  set(first TRUE)
  foreach(name IN LISTS layers)
    get_property(owns GLOBAL PROPERTY QRAG_LAYER_${name}_OWNS)
    get_property(deps GLOBAL PROPERTY QRAG_LAYER_${name}_DEPENDS)
    set(owns_json "")
    foreach(o IN LISTS owns)
      list(APPEND owns_json "\"${o}\"")
    endforeach()
    list(JOIN owns_json ", " owns_json)
    set(deps_json "")
    foreach(d IN LISTS deps)
      list(APPEND deps_json "\"${d}\"")
    endforeach()
    list(JOIN deps_json ", " deps_json)
    if(NOT first)
      string(APPEND json ",\n")
    endif()
    set(first FALSE)
    string(APPEND json "  \"${name}\": {\"owns\": [${owns_json}], \"depends\": [${deps_json}]}")
  endforeach()
  string(APPEND json "\n}\n")
  file(WRITE ${PROJECT_BINARY_DIR}/qrag_layers.json "${json}")
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    add_custom_target(qrag_layer_check ALL
      COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/cmake/check_layers.py
              --root ${PROJECT_SOURCE_DIR} --layers ${PROJECT_BINARY_DIR}/qrag_layers.json
      COMMENT "qrag: checking that every include respects the layers"
      VERBATIM)
    set(QRAG_LAYER_CHECK_PYTHON ${Python3_EXECUTABLE} CACHE INTERNAL "python for the layer check")
  endif()
endfunction()
