// <run-dir>/report.html: one self-contained page (no scripts, no external files) that a person can
// open to see how a run went: the latest sample grid (noisy / reconstructed / clean), loss and
// PSNR curves as inline SVG, the configuration and the per-epoch table. Rewritten after every
// evaluation.

import Foundation

public enum RunReport {
    public static func render(title: String, configuration: [(String, String)], epochs: [MetricsRecord],
                              gridPNG: [UInt8]?, gridEpoch: Int?) -> String {
        let losses = epochs.map { (Double($0.epoch), $0.trainLoss) }
        let psnr = epochs.compactMap { r in r.eval.map { (Double(r.epoch), $0.psnr) } }
        let noisy = epochs.compactMap { r in r.eval.map { (Double(r.epoch), $0.noisyPSNR) } }

        var html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        <style>
        body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
        h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
        .sub { color: #666; margin-top: 0; }
        .charts { display: flex; gap: 24px; flex-wrap: wrap; }
        table { border-collapse: collapse; font-size: 13px; }
        td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
        th { background: #f3f3f3; } td.k { text-align: left; color: #555; }
        img.grid { image-rendering: pixelated; border: 1px solid #ccc; }
        .legend { font-size: 12px; color: #555; }
        </style></head><body>
        <h1>\(escape(title))</h1>
        <p class="sub">dae-dist run report, updated \(escape(ISO8601DateFormatter().string(from: Date())))</p>

        """
        html += "<h2>Samples\(gridEpoch.map { " after epoch \($0)" } ?? "")</h2>\n"
        if let gridPNG {
            html += "<p class=\"legend\">Top row: noisy test inputs. Middle row: the model's reconstructions. Bottom row: the clean images.</p>\n"
            html += "<img class=\"grid\" alt=\"sample grid\" width=\"\(3 * 302)\" src=\"data:image/png;base64,\(Data(gridPNG).base64EncodedString())\">\n"
        } else {
            html += "<p>No evaluation yet.</p>\n"
        }
        html += "<h2>Curves</h2>\n<div class=\"charts\">\n"
        html += chart(title: "training loss (mean per epoch)", series: [("train loss", "#1f77b4", losses)], yLabel: "loss")
        html += chart(title: "test PSNR (dB)", series: [("reconstruction", "#d62728", psnr), ("noisy input", "#7f7f7f", noisy)], yLabel: "dB")
        html += "</div>\n<h2>Epochs</h2>\n<table><tr><th>epoch</th><th>step</th><th>train loss</th><th>test MSE</th><th>PSNR dB</th><th>SSIM</th><th>noisy PSNR dB</th><th>samples/s</th><th>seconds</th></tr>\n"
        for r in epochs {
            func cell(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "" }
            html += "<tr><td>\(r.epoch)</td><td>\(r.step)</td><td>\(cell(r.trainLoss, "%.6f"))</td>"
            html += "<td>\(cell(r.eval?.mse, "%.6f"))</td><td>\(cell(r.eval?.psnr, "%.2f"))</td><td>\(cell(r.eval?.ssim, "%.4f"))</td>"
            html += "<td>\(cell(r.eval?.noisyPSNR, "%.2f"))</td><td>\(cell(r.samplesPerSecond, "%.0f"))</td><td>\(cell(r.seconds, "%.1f"))</td></tr>\n"
        }
        html += "</table>\n<h2>Configuration</h2>\n<table>\n"
        for (k, v) in configuration { html += "<tr><td class=\"k\">\(escape(k))</td><td style=\"text-align:left\">\(escape(v))</td></tr>\n" }
        html += "</table>\n</body></html>\n"
        return html
    }

    /// A line chart as inline SVG with axes, ticks and labels.
    static func chart(title: String, series: [(String, String, [(Double, Double)])], yLabel: String) -> String {
        let w = 480.0, h = 310.0, left = 64.0, right = 16.0, top = 44.0, bottom = 46.0
        let points = series.flatMap { $0.2 }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-size=\"11\" font-family=\"sans-serif\">\n"
        svg += "<text x=\"\(w / 2)\" y=\"16\" text-anchor=\"middle\" font-size=\"13\">\(escape(title))</text>\n"
        guard !points.isEmpty else { return svg + "<text x=\"\(w / 2)\" y=\"\(h / 2)\" text-anchor=\"middle\">no data yet</text></svg>\n" }
        var x0 = points.map(\.0).min()!, x1 = points.map(\.0).max()!
        var y0 = points.map(\.1).min()!, y1 = points.map(\.1).max()!
        if x1 == x0 { x0 -= 1; x1 += 1 }
        if y1 == y0 { y0 -= abs(y0) * 0.1 + 1e-6; y1 += abs(y1) * 0.1 + 1e-6 }
        let pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad
        func sx(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (w - left - right) }
        func sy(_ y: Double) -> Double { h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom) }
        svg += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"#333\"/>\n"
        svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"#333\"/>\n"
        for i in 0...4 {
            let y = y0 + (y1 - y0) * Double(i) / 4
            svg += "<line x1=\"\(left - 4)\" y1=\"\(sy(y))\" x2=\"\(w - right)\" y2=\"\(sy(y))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(sy(y) + 4)\" text-anchor=\"end\">\(tick(y))</text>\n"
        }
        let xTicks = Set((0...4).map { (x0 + (x1 - x0) * Double($0) / 4).rounded() })
        for x in xTicks.sorted() where x >= x0 && x <= x1 {
            svg += "<line x1=\"\(sx(x))\" y1=\"\(h - bottom)\" x2=\"\(sx(x))\" y2=\"\(h - bottom + 4)\" stroke=\"#333\"/>"
            svg += "<text x=\"\(sx(x))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">\(Int(x))</text>\n"
        }
        svg += "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 8)\" text-anchor=\"middle\">epoch</text>\n"
        svg += "<text x=\"14\" y=\"\((top + h - bottom) / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 14 \((top + h - bottom) / 2))\">\(escape(yLabel))</text>\n"
        for (k, (name, color, data)) in series.enumerated() where !data.isEmpty {
            let path = data.map { String(format: "%.1f,%.1f", sx($0.0), sy($0.1)) }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for p in data { svg += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%@\"/>", sx(p.0), sy(p.1), color) }
            // legend: a row above the plot area
            let lx = left + 150 * Double(k)
            svg += "\n<line x1=\"\(lx)\" y1=\"30\" x2=\"\(lx + 18)\" y2=\"30\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            svg += "<text x=\"\(lx + 24)\" y=\"34\" fill=\"\(color)\">\(escape(name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func tick(_ v: Double) -> String {
        let a = abs(v)
        if a >= 100 { return String(format: "%.0f", v) }
        if a >= 1 { return String(format: "%.2f", v) }
        if a >= 0.01 { return String(format: "%.4f", v) }
        return String(format: "%.2e", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
