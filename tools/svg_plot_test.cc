#include "tools/svg_plot.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tessera::tools {
namespace {

TEST(SvgPlotTest, DrawsEverySeriesAndEscapesText) {
  Series a{"loss <train>", {0, 1, 2, 3}, {2.0, 1.0, 0.5, 0.4}};
  Series b{"other", {0, 3}, {1.0, NAN}};
  const std::string svg = RenderSvg("t & u", {Panel{"loss", "step", "loss", {a, b}}});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("t &amp; u"), std::string::npos);
  EXPECT_NE(svg.find("loss &lt;train&gt;"), std::string::npos);
  size_t lines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++lines;
  EXPECT_EQ(lines, 2u);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(SvgPlotTest, EmptyPanelSaysSo) {
  const std::string svg = RenderSvg("t", {Panel{"p", "x", "y", {}}});
  EXPECT_NE(svg.find("no data"), std::string::npos);
}

}  // namespace
}  // namespace tessera::tools
