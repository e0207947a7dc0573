#!/bin/sh
# Offline stand-in for @remote_coverage_tools: every cc_test depends on these
# tools, but nothing here runs `bazel coverage`.
exit 0
