/// Dotted versions as licences and clients write them ("2026.2", "11.0.3").
public enum Version {
    /// Compares component-wise: numeric components as numbers ("2026.10" > "2026.9"), others as
    /// text; a missing component counts as 0 ("2026" == "2026.0").
    public static func compare(_ lhs: String, _ rhs: String) -> Int {
        let a = lhs.split(separator: ".")
        let b = rhs.split(separator: ".")
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : "0"
            let y = i < b.count ? b[i] : "0"
            if let m = Int(x), let n = Int(y) {
                if m != n { return m < n ? -1 : 1 }
            } else if x != y {
                return x < y ? -1 : 1
            }
        }
        return 0
    }

    /// True when a client at `version` may use a feature whose ceiling is `ceiling` (empty = any).
    /// A client that states no version gets no feature that has a ceiling.
    public static func isAllowed(_ version: String, ceiling: String) -> Bool {
        ceiling.isEmpty || (!version.isEmpty && self.compare(version, ceiling) <= 0)
    }
}
