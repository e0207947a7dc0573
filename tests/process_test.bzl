"""process_test: a GoogleTest binary that runs the real Tessera binaries."""

load("//third_party/bazel:copts.bzl", "TESSERA_COPTS")

def process_test(name, deps = [], data = [], tags = [], size = "large", timeout = "long", **kwargs):
    """A cc_test of tests/<name>.cc that starts processes on 127.0.0.1.

    It gets the binaries collected by :bin through $TESSERA_BIN_DIR, links
    :test_cluster and GoogleTest, and runs alone ("exclusive") so that its
    processes do not compete with other tests for the two cores.
    """
    native.cc_test(
        name = name,
        size = size,
        timeout = timeout,
        srcs = [name + ".cc"],
        copts = TESSERA_COPTS,
        data = [":bin"] + data,
        env = {"TESSERA_BIN_DIR": "tests/bin"},
        tags = ["exclusive"] + tags,
        deps = [
            ":test_cluster",
            "@system//:gmock",
            "@system//:gtest_main",
        ] + deps,
        **kwargs
    )
