#include "tools/svg_plot.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tessera::tools {
namespace {

TEST(SvgPlotTest, DrawsEverySeriesAndEscapesText) {
  Series a{"loss <train>", {0, 1, 2, 3}, {2.0, 1.0, 0.5, 0.4}};
  Series b{"other", {0, 3}, {1.0, NAN}};
  const std::string svg = RenderSvg("t & u", {Panel{"loss", "step", "loss", {a, b}, {}}});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("t &amp; u"), std::string::npos);
  EXPECT_NE(svg.find("loss &lt;train&gt;"), std::string::npos);
  size_t lines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++lines;
  EXPECT_EQ(lines, 2u);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST(SvgPlotTest, ZeroTickIsNotNegative) {
  // Padding puts the y axis at [-0.2, 4.2]: the first tick is ceil(-0.2) = -0.
  const std::string svg = RenderSvg("t", {Panel{"p", "x", "y", {Series{"s", {0, 1}, {0, 4}}}, {}}});
  EXPECT_NE(svg.find(">0<"), std::string::npos);
  EXPECT_EQ(svg.find(">-0<"), std::string::npos);
}

TEST(SvgPlotTest, ExplicitXTicksReplaceTheRoundValues) {
  Panel p{"goodput", "size", "GB/s", {Series{"push", {12, 20, 24}, {0.1, 1.5, 2.4}}}, {}};
  p.x_ticks = {{12, "4 KiB"}, {20, "1 MiB"}, {24, "16 MiB"}, {40, "off the axis"}};
  const std::string svg = RenderSvg("t", {p});
  EXPECT_NE(svg.find(">4 KiB<"), std::string::npos);
  EXPECT_NE(svg.find(">16 MiB<"), std::string::npos);
  EXPECT_EQ(svg.find("off the axis"), std::string::npos);
  EXPECT_EQ(svg.find(">15<"), std::string::npos);  // no automatic tick
}

TEST(SvgPlotTest, EmptyPanelSaysSo) {
  const std::string svg = RenderSvg("t", {Panel{"p", "x", "y", {}, {}}});
  EXPECT_NE(svg.find("no data"), std::string::npos);
}

}  // namespace
}  // namespace tessera::tools
