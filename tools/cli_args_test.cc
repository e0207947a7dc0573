#include "tools/cli_args.h"

#include "gtest/gtest.h"

namespace tessera::tools {
namespace {

const std::vector<FlagSpec> kSpecs = {
    {"servers", "2", "servers"}, {"out", "dir", "out"}, {"wait", "", "wait", true}};

TEST(CliArgsTest, ParsesFlagsAndPositionals) {
  absl::StatusOr<CliArgs> a = ParseCliArgs({"job.yaml", "--servers=3", "--out", "x", "--wait"}, kSpecs);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->positional, std::vector<std::string>{"job.yaml"});
  EXPECT_EQ(*a->GetInt("servers", 1, 10), 3);
  EXPECT_EQ(a->Get("out"), "x");
  EXPECT_TRUE(a->GetBool("wait"));
  EXPECT_FALSE(a->help);
}

TEST(CliArgsTest, DefaultsAndHelp) {
  absl::StatusOr<CliArgs> a = ParseCliArgs({"-h"}, kSpecs);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->help);
  EXPECT_EQ(a->Get("servers"), "2");
  EXPECT_FALSE(a->GetBool("wait"));
}

TEST(CliArgsTest, Errors) {
  EXPECT_EQ(ParseCliArgs({"--nope=1"}, kSpecs).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCliArgs({"--out"}, kSpecs).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<CliArgs> a = ParseCliArgs({"--servers=many"}, kSpecs);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->GetInt("servers", 1, 10).ok());
  EXPECT_NE(FlagsHelp(kSpecs).find("--servers=2"), std::string::npos);
}

}  // namespace
}  // namespace tessera::tools
