#include "common/file_util.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace tessera {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

TEST(ScopedTempDirTest, GoesWithAllItHolds) {
  std::string path;
  {
    absl::StatusOr<ScopedTempDir> dir = ScopedTempDir::Create("tessera-filetest");
    ASSERT_TRUE(dir.ok()) << dir.status();
    path = dir->path();
    EXPECT_NE(path.find("/tessera-filetest-"), std::string::npos) << path;
    ASSERT_EQ(mkdir((path + "/sub").c_str(), 0755), 0);
    ASSERT_TRUE(WriteFileAtomically(path + "/sub/f", "x").ok());
    ASSERT_TRUE(Exists(path + "/sub/f"));
  }
  EXPECT_FALSE(Exists(path));
}

TEST(ScopedTempDirTest, AMoveHandsTheFolderOver) {
  absl::StatusOr<ScopedTempDir> a = ScopedTempDir::Create("tessera-filetest");
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string path = a->path();
  {
    ScopedTempDir b = std::move(*a);
    EXPECT_EQ(b.path(), path);
    EXPECT_TRUE(a->path().empty());
    a = ScopedTempDir::Create("tessera-filetest");  // the moved-from one takes a new folder
    ASSERT_TRUE(a.ok());
    EXPECT_TRUE(Exists(path));
  }
  EXPECT_FALSE(Exists(path));
  EXPECT_TRUE(Exists(a->path()));
}

TEST(ScopedTempDirTest, AKeptFolderStays) {
  std::string path;
  {
    absl::StatusOr<ScopedTempDir> dir = ScopedTempDir::Create("tessera-filetest");
    ASSERT_TRUE(dir.ok()) << dir.status();
    path = dir->path();
    dir->Keep();
  }
  EXPECT_TRUE(Exists(path));
  EXPECT_EQ(rmdir(path.c_str()), 0);
}

TEST(ScopedTempDirTest, AMissingBaseIsAClearError) {
  const char* old = getenv("TEST_TMPDIR");
  const std::string saved = old ? old : "";
  setenv("TEST_TMPDIR", "/nonexistent-tessera-base", 1);
  absl::StatusOr<ScopedTempDir> dir = ScopedTempDir::Create("x");
  if (old) {
    setenv("TEST_TMPDIR", saved.c_str(), 1);
  } else {
    unsetenv("TEST_TMPDIR");
  }
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("/nonexistent-tessera-base/x-"), absl::string_view::npos)
      << dir.status();
}

}  // namespace
}  // namespace tessera
