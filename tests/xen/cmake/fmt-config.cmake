# fmt for the static dom0 build: Debian ships libfmt only as a shared library,
# so tests/xen/run.sh points fmt_DIR here and uses fmt header-only instead.
if(NOT TARGET fmt::fmt)
  add_library(fmt::fmt INTERFACE IMPORTED)
  set_target_properties(fmt::fmt PROPERTIES INTERFACE_COMPILE_DEFINITIONS FMT_HEADER_ONLY=1)
endif()
set(fmt_FOUND TRUE)
