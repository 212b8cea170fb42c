import Foundation
import LicenseAudit
import LicenseReports

/// Seats in use over time as an SVG drawn on the server: the average per bucket as an area, the
/// peak per bucket as a step line, the capacity as a dashed line, and the window's peak marked.
/// No script; every text in it escaped.
enum ConsoleChart {
    static let width = 720.0
    static let height = 240.0
    static let left = 44.0
    static let right = 12.0
    static let top = 14.0
    static let bottom = 30.0

    static func svg(_ series: UsageSeries, title: String) -> String {
        let plotWidth = Self.width - Self.left - Self.right
        let plotHeight = Self.height - Self.top - Self.bottom
        let highest = max(series.points.map(\.peak).max() ?? 0, series.capacity ?? 0, 1)
        let step = Self.gridStep(Double(highest))
        // One grid step above the highest value: room for the labels.
        let ceiling = ((Double(highest) / step).rounded(.down) + 1) * step
        let span = Double(max(series.toMs - series.fromMs, 1))
        func x(_ ms: Int64) -> Double { Self.left + Double(ms - series.fromMs) / span * plotWidth }
        func y(_ seats: Double) -> Double { Self.top + plotHeight - seats / ceiling * plotHeight }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }

        var svg = """
            <svg class="chart" viewBox="0 0 \(Int(Self.width)) \(Int(Self.height))" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">
            <title id="chart-title">\(Console.escape(title))</title>

            """
        // Grid and seat labels.
        var mark = 0.0
        while mark <= ceiling + 0.001 {
            svg +=
                "<line class=\"grid\" x1=\"\(f(Self.left))\" x2=\"\(f(Self.width - Self.right))\" y1=\"\(f(y(mark)))\" y2=\"\(f(y(mark)))\"/>"
            svg +=
                "<text class=\"axis\" x=\"\(f(Self.left - 6))\" y=\"\(f(y(mark) + 4))\" text-anchor=\"end\">\(Self.number(mark))</text>\n"
            mark += step
        }
        // Time labels: start, middle, end.
        for (ms, anchor) in [(series.fromMs, "start"), (series.fromMs + (series.toMs - series.fromMs) / 2, "middle"), (series.toMs, "end")]
        {
            svg +=
                "<text class=\"axis\" x=\"\(f(x(ms)))\" y=\"\(f(Self.height - 10))\" text-anchor=\"\(anchor)\">\(Self.time(ms, span: series.toMs - series.fromMs))</text>\n"
        }
        if !series.points.isEmpty {
            // Average: an area under a step outline.
            var area = "M\(f(x(series.points[0].startMs))),\(f(y(0)))"
            var peaks = ""
            for point in series.points {
                area += " L\(f(x(point.startMs))),\(f(y(point.average))) L\(f(x(point.endMs))),\(f(y(point.average)))"
                peaks += (peaks.isEmpty ? "M" : " L") + "\(f(x(point.startMs))),\(f(y(Double(point.peak))))"
                peaks += " L\(f(x(point.endMs))),\(f(y(Double(point.peak))))"
            }
            area += " L\(f(x(series.points[series.points.count - 1].endMs))),\(f(y(0))) Z"
            svg += "<path class=\"average\" d=\"\(area)\"><title>seats held on average</title></path>\n"
            svg += "<path class=\"peak\" d=\"\(peaks)\"><title>most seats held at once</title></path>\n"
        }
        if let capacity = series.capacity {
            svg +=
                "<line class=\"capacity\" x1=\"\(f(Self.left))\" x2=\"\(f(Self.width - Self.right))\" y1=\"\(f(y(Double(capacity))))\" y2=\"\(f(y(Double(capacity))))\"><title>\(capacity) seats licensed</title></line>\n"
            svg +=
                "<text class=\"capacity-label\" x=\"\(f(Self.width - Self.right - 4))\" y=\"\(f(y(Double(capacity)) - 4))\" text-anchor=\"end\">\(capacity) licensed</text>\n"
        }
        if let at = series.peakAtMs, series.peak > 0 {
            let label = "peak \(series.peak) at \(JSONText.iso8601(ms: at).prefix(16).replacingOccurrences(of: "T", with: " "))"
            let anchor = x(at) > Self.width * 0.7 ? "end" : "start"
            svg += "<circle class=\"peak-mark\" cx=\"\(f(x(at)))\" cy=\"\(f(y(Double(series.peak))))\" r=\"4\"/>"
            svg +=
                "<text class=\"peak-label\" x=\"\(f(x(at) + (anchor == "end" ? -8 : 8)))\" y=\"\(f(y(Double(series.peak)) + 4))\" text-anchor=\"\(anchor)\">\(Console.escape(label))</text>\n"
        }
        svg += "</svg>"
        return svg
    }

    /// A grid step of 1, 2 or 5 × 10ⁿ giving about four lines up to `highest`.
    static func gridStep(_ highest: Double) -> Double {
        let rough = max(highest / 4, 1)
        let magnitude = pow(10, floor(log10(rough)))
        for multiple in [1.0, 2.0, 5.0, 10.0] where multiple * magnitude >= rough { return multiple * magnitude }
        return 10 * magnitude
    }

    static func number(_ value: Double) -> String {
        value.rounded() == value ? String(Int64(value)) : String(format: "%.1f", value)
    }

    /// A time label: the date for windows of days, the date and minute for shorter ones.
    static func time(_ ms: Int64, span: Int64) -> String {
        let iso = JSONText.iso8601(ms: ms)
        return span >= 3 * 86_400_000 ? String(iso.prefix(10)) : String(iso.prefix(16)).replacingOccurrences(of: "T", with: " ")
    }
}
