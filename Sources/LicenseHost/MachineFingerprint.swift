public import Foundation
public import LicenseCore

/// This machine's fingerprint components, read from the system: the systemd machine-id, the DMI
/// product UUID (when readable), the MAC addresses of physical network interfaces, the host name,
/// and an operator-supplied component for containers and VMs whose hardware ids are not stable.
/// Only hashes of them (`FingerprintComponent.id`) ever leave the machine. The daemon (for
/// `server_hostids`) and the client library (for activations) read the same.
public enum MachineFingerprint {
    /// Environment variable with an operator-supplied component.
    public static let environmentVariable = "LICENSED_FINGERPRINT_COMPONENT"

    /// The components readable here. `operatorSupplied` (or the environment variable) adds one.
    public static func components(operatorSupplied: String = "", environment: [String: String] = ProcessInfo.processInfo.environment)
        -> [FingerprintComponent]
    {
        var components: [FingerprintComponent] = []
        if let machineID = self.firstLine(of: "/etc/machine-id") {
            components.append(FingerprintComponent(kind: "machine-id", value: machineID))
        }
        if let uuid = self.firstLine(of: "/sys/class/dmi/id/product_uuid") {
            components.append(FingerprintComponent(kind: "product-uuid", value: uuid.lowercased()))
        }
        for mac in self.physicalMACs() {
            components.append(FingerprintComponent(kind: "mac", value: mac))
        }
        let host = ProcessInfo.processInfo.hostName
        if !host.isEmpty { components.append(FingerprintComponent(kind: "hostname", value: host)) }
        let supplied = operatorSupplied.isEmpty ? (environment[self.environmentVariable] ?? "") : operatorSupplied
        if !supplied.isEmpty { components.append(FingerprintComponent(kind: "operator", value: supplied)) }
        return components
    }

    /// MAC addresses of interfaces backed by a device (not loopback, bridges, veth or tunnels).
    static func physicalMACs() -> [String] {
        let base = "/sys/class/net"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: base) else { return [] }
        return names.sorted().compactMap { name in
            guard FileManager.default.fileExists(atPath: "\(base)/\(name)/device"),
                let mac = self.firstLine(of: "\(base)/\(name)/address")?.lowercased(),
                mac != "00:00:00:00:00:00"
            else { return nil }
            return mac
        }
    }

    static func firstLine(of path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let line = text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return line.isEmpty ? nil : line
    }
}
