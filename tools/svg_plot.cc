#include "tools/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tessera::tools {
namespace {

constexpr double kPanelW = 520, kPanelH = 360;
// kRight leaves room for half of a label centred on the last x tick.
constexpr double kLeft = 70, kRight = 32, kTop = 40, kBottom = 50;
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// About five round tick values covering [lo, hi].
std::vector<double> Ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 5;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  }
  // Whole multiples of the step (no drift from repeated addition), and 0 as
  // 0 rather than -0.
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step); k * step <= hi + step * 1e-9; ++k) {
    ticks.push_back(k == 0 ? 0.0 : k * step);
  }
  return ticks;
}

std::string RenderPanel(const Panel& p, double ox) {
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const Series& s : p.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
    }
  }
  std::string out = absl::StrFormat(
      "<g transform=\"translate(%g,0)\">\n<text x=\"%g\" y=\"24\" text-anchor=\"middle\" "
      "font-size=\"15\">%s</text>\n",
      ox, kPanelW / 2, Escape(p.title));
  const double pw = kPanelW - kLeft - kRight, ph = kPanelH - kTop - kBottom;
  out += absl::StrFormat(
      "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#333\"/>\n", kLeft,
      kTop, pw, ph);
  if (!std::isfinite(xmin)) return out + "<text x=\"200\" y=\"180\">no data</text>\n</g>\n";
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  const double pad = (ymax - ymin) * 0.05;
  ymin -= pad;
  ymax += pad;
  auto sx = [&](double x) { return kLeft + (x - xmin) / (xmax - xmin) * pw; };
  auto sy = [&](double y) { return kTop + ph - (y - ymin) / (ymax - ymin) * ph; };
  std::vector<std::pair<double, std::string>> x_ticks = p.x_ticks;
  if (x_ticks.empty()) {
    for (double t : Ticks(xmin, xmax)) x_ticks.emplace_back(t, absl::StrFormat("%g", t));
  }
  for (const auto& [t, label] : x_ticks) {
    if (!(t >= xmin && t <= xmax)) continue;
    out += absl::StrFormat(
        "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#ddd\"/><text x=\"%.1f\" "
        "y=\"%g\" text-anchor=\"middle\" font-size=\"11\">%s</text>\n",
        sx(t), kTop, sx(t), kTop + ph, sx(t), kTop + ph + 15, Escape(label));
  }
  for (double t : Ticks(ymin, ymax)) {
    out += absl::StrFormat(
        "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%g\" "
        "y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n",
        kLeft, sy(t), kLeft + pw, sy(t), kLeft - 5, sy(t) + 4, t);
  }
  out += absl::StrFormat(
      "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n"
      "<text transform=\"translate(16,%g) rotate(-90)\" text-anchor=\"middle\" "
      "font-size=\"12\">%s</text>\n",
      kLeft + pw / 2, kPanelH - 12, Escape(p.x_label), kTop + ph / 2, Escape(p.y_label));
  // The legend sits in the top right corner, as wide as its longest label,
  // on a backdrop so it stays readable over the lines it names.
  size_t longest = 0;
  for (const Series& s : p.series) longest = std::max(longest, s.label.size());
  const double legend_w = 32 + 6.2 * static_cast<double>(longest);
  const double legend_x = kLeft + pw - legend_w;
  if (p.series.size() > 1) {
    out += absl::StrFormat(
        "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"white\" "
        "fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
        legend_x - 4, kTop + 4, legend_w, 16.0 * static_cast<double>(p.series.size()) + 4);
  }
  for (size_t k = 0; k < p.series.size(); ++k) {
    const Series& s = p.series[k];
    const char* color = kColors[k % (sizeof(kColors) / sizeof(kColors[0]))];
    std::string pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      absl::StrAppendFormat(&pts, "%.1f,%.1f ", sx(s.x[i]), sy(s.y[i]));
    }
    out += absl::StrFormat(
        "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"%s\"/>\n", color, pts);
    if (p.series.size() > 1) {
      const double ly = kTop + 14 + 16 * k;
      out += absl::StrFormat(
          "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"2\"/>"
          "<text x=\"%g\" y=\"%g\" font-size=\"11\">%s</text>\n",
          legend_x, ly, legend_x + 20, ly, color, legend_x + 25, ly + 4, Escape(s.label));
    }
  }
  return out + "</g>\n";
}

}  // namespace

std::string RenderSvg(const std::string& title, const std::vector<Panel>& panels) {
  const double width = kPanelW * std::max<size_t>(1, panels.size());
  const double height = kPanelH + 30;
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
      "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\" font-size=\"13\" fill=\"#555\">%s</text>\n"
      "<g transform=\"translate(0,0)\">\n",
      width, height, width, height, width / 2, height - 8, Escape(title));
  for (size_t i = 0; i < panels.size(); ++i) out += RenderPanel(panels[i], kPanelW * i);
  return out + "</g>\n</svg>\n";
}

}  // namespace tessera::tools
