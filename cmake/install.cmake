# Install rules: headers, the exported INTERFACE target and an arch-independent version file,
# so `find_package(logquant CONFIG)` works after `cmake --install`.
include(CMakePackageConfigHelpers)

install(TARGETS logquant EXPORT logquantTargets)
install(DIRECTORY include/logquant DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT logquantTargets
  NAMESPACE logquant::
  DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/logquant)

configure_package_config_file(cmake/logquantConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/logquantConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/logquant)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/logquantConfigVersion.cmake
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/logquantConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/logquantConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/logquant)
