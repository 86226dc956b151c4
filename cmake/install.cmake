# Installs the framework as a CMake package (find_package(eventsource
# COMPONENTS ...)) and a pkg-config file.

include(CMakePackageConfigHelpers)

get_property(_es_modules GLOBAL PROPERTY ES_MODULES)
install(TARGETS ${_es_modules}
        EXPORT eventsource-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

set(ES_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/eventsource)
install(EXPORT eventsource-targets
        NAMESPACE es::
        DESTINATION ${ES_CMAKE_DIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/eventsource-config.cmake.in
  ${PROJECT_BINARY_DIR}/eventsource-config.cmake
  INSTALL_DESTINATION ${ES_CMAKE_DIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/eventsource-config-version.cmake
  COMPATIBILITY SameMinorVersion)
# Debian's CAF has no CMake config: consumers find it with ours.
install(FILES ${PROJECT_BINARY_DIR}/eventsource-config.cmake
              ${PROJECT_BINARY_DIR}/eventsource-config-version.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake
        DESTINATION ${ES_CMAKE_DIR})

# pkg-config: one file for everything built (the libraries are static, so
# their drivers come along as private libraries).
set(ES_PC_LIBS "-les_testing")
set(ES_PC_REQUIRES_PRIVATE "")
if(ES_WITH_POSTGRES)
  string(APPEND ES_PC_LIBS " -les_cluster")
endif()
if(ES_WITH_OPS)
  string(APPEND ES_PC_LIBS " -les_ops")
  string(APPEND ES_PC_REQUIRES_PRIVATE " cpp-httplib")
endif()
string(APPEND ES_PC_LIBS " -les_projections -les_actors -les_brokers")
set(ES_PC_PRIVATE "-lsqlite3 -luuid")
# The store parses JSON with simdjson (a shared library with a .pc file).
string(APPEND ES_PC_REQUIRES_PRIVATE " simdjson")
if(ES_WITH_REDIS)
  # Before the bus, which it builds on; hiredis has a .pc file of its own.
  string(APPEND ES_PC_LIBS " -les_redis")
  string(APPEND ES_PC_REQUIRES_PRIVATE " hiredis")
endif()
if(ES_WITH_RABBITMQ)
  string(APPEND ES_PC_LIBS " -les_rabbitmq")
  string(APPEND ES_PC_REQUIRES_PRIVATE " librabbitmq")
endif()
if(ES_WITH_KAFKA)
  string(APPEND ES_PC_LIBS " -les_kafka")
  string(APPEND ES_PC_REQUIRES_PRIVATE " rdkafka")
endif()
string(APPEND ES_PC_LIBS " -les_bus -les_supervision")
# Crypto-shredding (es::shred, es::shred_postgres) seals with libsodium.
if(ES_WITH_POSTGRES)
  string(APPEND ES_PC_LIBS " -les_shred_postgres")
endif()
string(APPEND ES_PC_LIBS " -les_shred")
string(APPEND ES_PC_REQUIRES_PRIVATE " libsodium")
if(ES_WITH_POSTGRES)
  string(APPEND ES_PC_LIBS " -les_postgres")
  string(APPEND ES_PC_PRIVATE " -lpq")
endif()
string(APPEND ES_PC_LIBS " -les_sqlite -les_store -lcaf_io -lcaf_core")
configure_file(${PROJECT_SOURCE_DIR}/cmake/eventsource.pc.in
               ${PROJECT_BINARY_DIR}/eventsource.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/eventsource.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
