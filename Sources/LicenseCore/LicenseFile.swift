import Foundation
public import LicenseProtocol
import SwiftProtobuf

/// A licence file: any number of armored `SignedLicense` blocks; everything outside them is comment.
///
/// ```
/// -----BEGIN LICENSED LICENSE-----
/// base64 of the serialized SignedLicense, wrapped at 64 columns
/// -----END LICENSED LICENSE-----
/// ```
public enum LicenseFile {
    /// The line that opens a block.
    public static let beginMarker = "-----BEGIN LICENSED LICENSE-----"
    /// The line that closes a block.
    public static let endMarker = "-----END LICENSED LICENSE-----"

    /// One block as found in the file, numbered from 1 in file order.
    public struct Block: Sendable {
        /// 1-based position among the file's blocks.
        public var number: Int
        /// The decoded licence, or why the block could not be decoded.
        public var content: Result<Licensed_V1_SignedLicense, LicenseRejection>
    }

    /// Splits `text` into blocks. Never throws: a bad block is a block whose content is a rejection.
    public static func parse(_ text: String) -> [Block] {
        var blocks: [Block] = []
        var body: [Substring]? = nil
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = rawLine.trimmingWhitespace()
            if line == self.beginMarker {
                if body != nil {
                    blocks.append(
                        Block(number: blocks.count + 1, content: .failure(.unparseable("block not closed before the next BEGIN line")))
                    )
                }
                body = []
            } else if line == self.endMarker {
                guard let lines = body else { continue }  // stray END line: comment
                blocks.append(Block(number: blocks.count + 1, content: self.decode(lines.joined())))
                body = nil
            } else if body != nil {
                body!.append(line)
            }
        }
        if body != nil {
            blocks.append(Block(number: blocks.count + 1, content: .failure(.unparseable("block has no END line"))))
        }
        return blocks
    }

    /// One armored block for `signed`, ending with a newline.
    public static func armor(_ signed: Licensed_V1_SignedLicense) throws -> String {
        let bytes: [UInt8] = try signed.serializedBytes()
        let encoded = Data(bytes).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return self.beginMarker + "\n" + encoded + "\n" + self.endMarker + "\n"
    }

    private static func decode(_ base64: String) -> Result<Licensed_V1_SignedLicense, LicenseRejection> {
        guard let bytes = Data(base64Encoded: base64) else {
            return .failure(.unparseable("block is not valid base64"))
        }
        do {
            let signed = try Licensed_V1_SignedLicense(serializedBytes: bytes)
            guard !signed.license.isEmpty, !signed.signature.isEmpty else {
                return .failure(.unparseable("block has no licence or no signature"))
            }
            return .success(signed)
        } catch {
            return .failure(.unparseable("block is not a SignedLicense: \(error)"))
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
