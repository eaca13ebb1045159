# dynpose_trt_version(<NvInferVersion.h> <out-var>): "MAJOR.MINOR.PATCH" of a TensorRT
# header set.
#
# Why not one regex over the NV_TENSORRT_* lines: from 10.16 / 11.x the header defines
#   #define TRT_MAJOR_ENTERPRISE 11
#   #define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE
# so the value is a macro name. Each NV_TENSORRT_<PART> is resolved here through at most
# a few levels of #define indirection; an unresolvable header is a configure error.
function(dynpose_trt_version header out)
  file(STRINGS "${header}" _defs REGEX "^[ \t]*#[ \t]*define[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]+[A-Za-z0-9_]+")
  set(_parts)
  foreach(part MAJOR MINOR PATCH)
    set(_name "NV_TENSORRT_${part}")
    set(_value "")
    foreach(_depth RANGE 4)
      set(_found "")
      foreach(_line IN LISTS _defs)
        if(_line MATCHES "^[ \t]*#[ \t]*define[ \t]+${_name}[ \t]+([A-Za-z0-9_]+)")
          set(_found "${CMAKE_MATCH_1}")
          break()
        endif()
      endforeach()
      if(_found STREQUAL "")
        break()
      elseif(_found MATCHES "^[0-9]+$")
        set(_value "${_found}")
        break()
      endif()
      set(_name "${_found}")
    endforeach()
    if(_value STREQUAL "")
      message(FATAL_ERROR "dynpose: cannot read NV_TENSORRT_${part} from ${header} "
                          "(pass -DTENSORRT_ROOT=<TensorRT include dir> with a complete NvInferVersion.h)")
    endif()
    list(APPEND _parts "${_value}")
  endforeach()
  list(JOIN _parts "." _v)
  set(${out} "${_v}" PARENT_SCOPE)
endfunction()
