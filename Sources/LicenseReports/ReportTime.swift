import Foundation

/// Times as reports take them: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` (fractional seconds allowed)
/// or milliseconds since 1970 (`licensectl report`, `licensectl audit`, the console's reports).
public enum ReportTime {
    /// Milliseconds since 1970 of `text`, or nil when it is none of the forms.
    public static func milliseconds(_ text: String) -> Int64? {
        if let ms = Int64(text) { return ms }
        let formatter = ISO8601DateFormatter()
        if text.count == 10 {
            formatter.formatOptions = [.withFullDate]
        } else if text.contains(".") {
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        } else {
            formatter.formatOptions = [.withInternetDateTime]
        }
        guard let date = formatter.date(from: text) else { return nil }
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
}
