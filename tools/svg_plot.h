#ifndef TESSERA_TOOLS_SVG_PLOT_H_
#define TESSERA_TOOLS_SVG_PLOT_H_

#include <string>
#include <utility>
#include <vector>

namespace tessera::tools {

struct Series {
  std::string label;
  std::vector<double> x;
  std::vector<double> y;
};

struct Panel {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Series> series;
  // Ticks of the x axis as (position, label), e.g. sizes drawn at their
  // log2; empty: about five round values, labelled with their value.
  std::vector<std::pair<double, std::string>> x_ticks;
};

// Renders panels side by side as a standalone SVG document: axes with
// ticks, one polyline per series, a legend when a panel has several series.
std::string RenderSvg(const std::string& title, const std::vector<Panel>& panels);

}  // namespace tessera::tools

#endif  // TESSERA_TOOLS_SVG_PLOT_H_
