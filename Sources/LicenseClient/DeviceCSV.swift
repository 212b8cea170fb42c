import Foundation
public import LicenseProtocol

/// Device lists in CSV for bulk assignment (`licensectl activations assign|revoke`, the console's
/// upload): a header row naming a `DeviceID` or `fingerprint` column (any case); a
/// fingerprint cell holds component ids separated by spaces. Quoted fields ("a,b") are understood.
public enum DeviceCSV {
    /// Why a file is not a device list.
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let message: String
        public var description: String { self.message }
    }

    /// The rows of `text` (named `source` in errors), numbered from 1 after the header.
    public static func parse(_ text: String, source file: String) throws(Problem) -> [Licensed_V1_DeviceRow] {
        var lines = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        guard !lines.isEmpty else { throw Problem(message: "\(file) is empty") }
        let header = self.fields(lines.removeFirst()).map { $0.lowercased().replacingOccurrences(of: " ", with: "") }
        let deviceColumn = header.firstIndex { $0 == "deviceid" || $0 == "device_id" }
        let fingerprintColumn = header.firstIndex { $0 == "fingerprint" }
        guard deviceColumn != nil || fingerprintColumn != nil else {
            throw Problem(message: "\(file) has no DeviceID or fingerprint column in its header")
        }
        return lines.enumerated().map { index, line in
            let fields = self.fields(line)
            var row = Licensed_V1_DeviceRow()
            row.row = UInt32(index + 1)
            if let c = deviceColumn, c < fields.count { row.deviceID = fields[c].trimmingCharacters(in: .whitespaces) }
            if row.deviceID.isEmpty, let c = fingerprintColumn, c < fields.count {
                row.fingerprint = fields[c].split(separator: " ").map(String.init)
            }
            return row
        }
    }

    /// The fields of one CSV line (double quotes group, as in "a,b").
    public static func fields(_ line: String) -> [String] {
        var fields: [String] = []
        var current = ""
        var quoted = false
        var iterator = Array(line).makeIterator()
        while let c = iterator.next() {
            if quoted {
                if c == "\"" {
                    quoted = false
                } else {
                    current.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                fields.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        fields.append(current)
        return fields
    }
}
