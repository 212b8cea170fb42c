import Foundation

/// Armored blocks in text — `-----BEGIN …-----`, base64 lines, `-----END …-----` — read the way
/// files that travel by e-mail need: CRLF (or CR) line ends, lines rewrapped to another width,
/// leading and trailing spaces and `> ` quoting (nested too) are forgiven, inside and around
/// blocks; any other character inside a block is refused, naming the file's line. The `#` comment
/// lines just above a block are kept as its header. Licence files and air-gapped activation
/// files are both read with it.
public enum ArmoredText {
    /// Why a block's body is not base64.
    public struct Problem: Error, Sendable, Equatable {
        /// For a person, naming the line.
        public var message: String
    }

    /// One block: where it begins, its header and its decoded bytes (or why not).
    public struct Block: Sendable {
        /// 1-based line of the file where the block begins.
        public var line: Int
        /// The `#` comment lines just above it (quote marks, `#` and surrounding spaces removed).
        public var header: [String]
        /// The base64-decoded body, or why it could not be decoded.
        public var bytes: Result<[UInt8], Problem>
    }

    /// Every block of `text` between `begin` and `end` marker lines, in order. Never throws.
    public static func blocks(in text: String, begin: String, end: String) -> [Block] {
        var blocks: [Block] = []
        var open: (line: Int, header: [String], body: [Substring], badLine: String?)? = nil
        var comment: [String] = []
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        for (index, rawLine) in lines.enumerated() {
            let number = index + 1
            let line = Self.unquoted(rawLine)
            if line == begin {
                if let unclosed = open {
                    let problem = Problem(message: "block not closed before the next BEGIN line (line \(number))")
                    blocks.append(Block(line: unclosed.line, header: unclosed.header, bytes: .failure(problem)))
                }
                open = (number, comment, [], nil)
                comment = []
            } else if line == end {
                guard let block = open else { continue }  // stray END line: comment
                let bytes: Result<[UInt8], Problem> =
                    block.badLine.map { .failure(Problem(message: $0)) } ?? Self.decode(block.body.joined())
                blocks.append(Block(line: block.line, header: block.header, bytes: bytes))
                open = nil
            } else if open != nil {
                if open!.badLine == nil, let bad = line.firstIndex(where: { !Self.isBase64($0) }) {
                    open!.badLine =
                        "line \(number): '\(line[bad])' is not a base64 character (a block holds only A–Z, a–z, 0–9, +, / and =)"
                }
                open!.body.append(line)
            } else if line.hasPrefix("#") {
                comment.append(String(line.dropFirst().trimmingWhitespace()))
            } else {
                comment = []
            }
        }
        if let unclosed = open {
            blocks.append(Block(line: unclosed.line, header: unclosed.header, bytes: .failure(Problem(message: "block has no END line"))))
        }
        return blocks
    }

    /// `bytes` as a block between `begin` and `end`, base64 wrapped at 64 columns, ending with a newline.
    public static func armor(_ bytes: [UInt8], begin: String, end: String) -> String {
        let encoded = Data(bytes).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return begin + "\n" + encoded + "\n" + end + "\n"
    }

    static func decode(_ base64: String) -> Result<[UInt8], Problem> {
        guard let data = Data(base64Encoded: base64) else {
            return .failure(Problem(message: "block is not valid base64 (its length or padding is wrong: a line lost or cut?)"))
        }
        return .success([UInt8](data))
    }

    /// A line without what mail adds: surrounding spaces and any number of `>` quote marks.
    static func unquoted(_ line: Substring) -> Substring {
        var s = line.trimmingWhitespace()
        while s.first == ">" { s = s.dropFirst().trimmingWhitespace() }
        return s
    }

    static func isBase64(_ c: Character) -> Bool {
        guard let ascii = c.asciiValue else { return false }
        switch ascii {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let first = s.first, first.isWhitespace { s.removeFirst() }
        while let last = s.last, last.isWhitespace { s.removeLast() }
        return s
    }
}
