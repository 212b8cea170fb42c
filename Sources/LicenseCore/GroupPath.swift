/// Groups form a hierarchy written as paths: "/emea/sales" is inside "/emea", which is inside "/".
/// A pool scoped to "/emea" serves members of "/emea/sales" when their own pool is empty.
public enum GroupPath {
    /// True when `group` is `ancestor` or lies below it.
    public static func isWithin(_ group: String, _ ancestor: String) -> Bool {
        let a = self.normalized(ancestor)
        let g = self.normalized(group)
        return g == a || a == "/" || g.hasPrefix(a + "/")
    }

    /// Levels between `group` and `ancestor` (0 when equal), or nil when not within it.
    public static func distance(from group: String, to ancestor: String) -> Int? {
        guard self.isWithin(group, ancestor) else { return nil }
        return self.depth(group) - self.depth(ancestor)
    }

    /// "/a/b" → 2; "/" → 0.
    public static func depth(_ group: String) -> Int {
        self.normalized(group).split(separator: "/").count
    }

    /// `group` and every group it lies within, nearest first ("/a/b" → "/a/b", "/a").
    public static func lineage(_ group: String) -> [String] {
        var parts = self.normalized(group).split(separator: "/").map(String.init)
        var result: [String] = []
        while !parts.isEmpty {
            result.append("/" + parts.joined(separator: "/"))
            parts.removeLast()
        }
        return result
    }

    static func normalized(_ group: String) -> String {
        var g = group.hasPrefix("/") ? group : "/" + group
        while g.count > 1 && g.hasSuffix("/") { g.removeLast() }
        return g
    }
}
