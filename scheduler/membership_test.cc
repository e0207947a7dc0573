#include "scheduler/membership.h"

#include "gtest/gtest.h"

namespace tessera::scheduler {
namespace {

TEST(MembershipTest, HeartbeatsKeepANodeAliveUntilTheTimeout) {
  FakeClock clock;
  Membership m(&clock, absl::Seconds(5));
  auto w = m.Register(WORKER, "w0", "");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(m.IsAlive("w0"));
  clock.Advance(absl::Seconds(4));
  ASSERT_TRUE(m.Heartbeat(w->id).ok());
  clock.Advance(absl::Seconds(5));
  EXPECT_TRUE(m.IsAlive("w0"));  // exactly the timeout: still alive
  EXPECT_TRUE(m.ExpireSilent().empty());
  clock.Advance(absl::Milliseconds(1));
  EXPECT_FALSE(m.IsAlive("w0"));
  EXPECT_EQ(m.ExpireSilent(), std::vector<std::string>{"w0"});
  EXPECT_TRUE(m.ExpireSilent().empty());  // reported once
  // A dead node's late heartbeat does not revive it: it must register again.
  auto late = m.Heartbeat(w->id);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(m.IsAlive("w0"));
  ASSERT_EQ(m.Nodes().size(), 1u);  // still listed, as dead
}

TEST(MembershipTest, ReRegistrationReplacesTheEntryWithANewId) {
  FakeClock clock;
  Membership m(&clock, absl::Seconds(5));
  auto first = m.Register(SERVER, "s0", "127.0.0.1:1");
  ASSERT_TRUE(first.ok());
  auto second = m.Register(SERVER, "s0", "127.0.0.1:2");
  ASSERT_TRUE(second.ok());
  EXPECT_NE(first->id, second->id);
  EXPECT_EQ(m.Heartbeat(first->id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(m.Heartbeat(second->id).ok());
  ASSERT_EQ(m.Nodes().size(), 1u);
  EXPECT_EQ(m.FindByName("s0")->address, "127.0.0.1:2");
}

TEST(MembershipTest, IdsFromAnotherIncarnationAreUnknown) {
  FakeClock clock;
  Membership before(&clock, absl::Seconds(5));
  Membership after(&clock, absl::Seconds(5));  // as after a scheduler restart
  auto old_id = before.Register(WORKER, "w0", "");
  auto other = after.Register(WORKER, "w1", "");
  ASSERT_TRUE(old_id.ok() && other.ok());
  EXPECT_EQ(after.Heartbeat(old_id->id).status().code(), absl::StatusCode::kNotFound);
}

TEST(MembershipTest, BadRegistrationsAreInvalidArgument) {
  FakeClock clock;
  Membership m(&clock, absl::Seconds(5));
  EXPECT_EQ(m.Register(NODE_ROLE_UNSPECIFIED, "x", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Register(WORKER, "", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Register(WORKER, "a b", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Register(WORKER, std::string(500, 'w'), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto no_address = m.Register(SERVER, "s0", "");
  EXPECT_EQ(no_address.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_address.status().message().find("s0"), absl::string_view::npos);
  EXPECT_TRUE(m.Nodes().empty());
}

}  // namespace
}  // namespace tessera::scheduler
