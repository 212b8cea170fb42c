import Foundation
public import LicenseCore

/// This machine's fingerprint components, read from the system: the systemd machine-id, the DMI
/// product UUID (when readable), the host name, and the operator's own component if configured.
/// A licence's `server_hostids` must name one of their ids.
public enum HostIdentity {
    /// The components readable on this machine.
    public static func components(operatorSupplied: String = "") -> [FingerprintComponent] {
        var components: [FingerprintComponent] = []
        if let machineID = self.firstLine(of: "/etc/machine-id") {
            components.append(FingerprintComponent(kind: "machine-id", value: machineID))
        }
        if let uuid = self.firstLine(of: "/sys/class/dmi/id/product_uuid") {
            components.append(FingerprintComponent(kind: "product-uuid", value: uuid.lowercased()))
        }
        let host = ProcessInfo.processInfo.hostName
        if !host.isEmpty { components.append(FingerprintComponent(kind: "hostname", value: host)) }
        if !operatorSupplied.isEmpty { components.append(FingerprintComponent(kind: "operator", value: operatorSupplied)) }
        return components
    }

    private static func firstLine(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let line = text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return line.isEmpty ? nil : line
    }
}
