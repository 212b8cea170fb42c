public import Foundation
public import LicenseCore

/// Where a process runs: on hardware or in a virtual machine (and which hypervisor or cloud), in a
/// container or not (and which runtime), and the cloud instance when the machine's DMI data names
/// one. Read from DMI (`/sys/class/dmi/id`), the CPU's `hypervisor` flag (`/proc/cpuinfo`), the
/// container markers (`/.dockerenv`, `/run/.containerenv`, the `container` variable, the cgroups
/// of process 1) — what systemd-detect-virt reads, without running it.
public struct HostEnvironment: Sendable, Equatable, CustomStringConvertible {
    /// Hardware, or a virtual machine.
    public enum Machine: String, Sendable {
        case physical
        case virtual
    }

    /// Hardware, or a virtual machine.
    public var machine: Machine
    /// The hypervisor or virtual platform ("kvm", "qemu", "vmware", "hyperv", "xen", "virtualbox",
    /// "amazon", "google", …; "unknown" when only the CPU flag says so), when virtual.
    public var hypervisor: String?
    /// The container runtime ("docker", "podman", "kubernetes", "lxc", "containerd",
    /// "systemd-nspawn", …), when in a container.
    public var container: String?
    /// The cloud ("aws", "azure", "gcp", …), when DMI names one.
    public var cloud: String?
    /// The cloud's id of this instance, when DMI shows it.
    public var instanceID: String?

    /// An environment (detection injected in tests of what depends on it).
    public init(machine: Machine, hypervisor: String? = nil, container: String? = nil, cloud: String? = nil, instanceID: String? = nil) {
        self.machine = machine
        self.hypervisor = hypervisor
        self.container = container
        self.cloud = cloud
        self.instanceID = instanceID
    }

    /// The environment kinds a licence can allow: "physical" or "virtual", and "container" when
    /// in one.
    public var kinds: [String] { [self.machine.rawValue] + (self.container == nil ? [] : ["container"]) }

    /// The kinds and the description, as licences check them.
    public var report: EnvironmentReport { EnvironmentReport(kinds: self.kinds, description: self.description) }

    public var description: String {
        var parts: [String] = []
        switch self.machine {
        case .physical: parts.append("physical machine")
        case .virtual: parts.append("virtual machine (\(self.hypervisor ?? "unknown"))")
        }
        if let cloud = self.cloud { parts.append("cloud \(cloud)" + (self.instanceID.map { " instance \($0)" } ?? "")) }
        if let container = self.container { parts.append("container (\(container))") }
        return parts.joined(separator: ", ")
    }

    /// Detects the environment of this process. `root` is where the file system is read from
    /// (tests point it at recorded fixtures), `environment` its variables.
    public static func detect(root: String = "/", environment: [String: String] = ProcessInfo.processInfo.environment) -> HostEnvironment {
        let files = Files(root: root)
        var detected = HostEnvironment(machine: .physical)
        let dmi = { (name: String) in files.firstLine("sys/class/dmi/id/\(name)") ?? "" }
        let vendor = dmi("sys_vendor"), product = dmi("product_name"), bios = dmi("bios_vendor")
        let chassisTag = dmi("chassis_asset_tag"), boardTag = dmi("board_asset_tag")
        if let platform = Self.platform(vendor: vendor, product: product, bios: bios, chassisTag: chassisTag) {
            detected.machine = .virtual
            detected.hypervisor = platform.hypervisor
            detected.cloud = platform.cloud
        } else if files.cpuFlags.contains("hypervisor") {
            detected.machine = .virtual
            detected.hypervisor = "unknown"
        }
        // The paravirtual clock names the hypervisor where DMI does not (QEMU accelerated by KVM
        // shows "QEMU" in DMI; a container sees no DMI at all).
        let clocks = files.text("sys/devices/system/clocksource/clocksource0/available_clocksource") ?? ""
        if detected.machine == .virtual, ["unknown", "qemu"].contains(detected.hypervisor) {
            if clocks.contains("kvm-clock") {
                detected.hypervisor = "kvm"
            } else if clocks.contains("hyperv") {
                detected.hypervisor = "hyperv"
            } else if clocks.contains("xen") {
                detected.hypervisor = "xen"
            }
        }
        switch detected.cloud {
        case "aws": detected.instanceID = boardTag.hasPrefix("i-") ? boardTag : nil
        case "azure": detected.instanceID = dmi("product_uuid").lowercased().nonEmpty
        case "gcp": detected.instanceID = dmi("product_serial").nonEmpty
        default: break
        }
        detected.container = Self.container(files: files, environment: environment)
        return detected
    }

    /// A virtual platform that DMI names, and its cloud: vendor, product and BIOS strings as
    /// hypervisors and clouds set them.
    static func platform(vendor: String, product: String, bios: String, chassisTag: String) -> (hypervisor: String, cloud: String?)? {
        let all = [vendor, product, bios].joined(separator: " ").lowercased()
        // Azure's VMs are Hyper-V ones with this chassis tag.
        if chassisTag == "7783-7084-3265-9085-8269-3286-77" { return ("hyperv", "azure") }
        let table: [(needle: String, hypervisor: String, cloud: String?)] = [
            ("amazon ec2", "amazon", "aws"),
            ("google compute engine", "google", "gcp"),
            ("alibaba cloud", "kvm", "alibaba"),
            ("digitalocean", "kvm", "digitalocean"),
            ("openstack", "kvm", "openstack"),
            ("vmware", "vmware", nil),
            ("virtualbox", "virtualbox", nil),
            ("innotek", "virtualbox", nil),
            ("parallels", "parallels", nil),
            ("xen", "xen", nil),
            ("bochs", "bochs", nil),
            ("kvm", "kvm", nil),
            ("qemu", "qemu", nil),
        ]
        if let match = table.first(where: { all.contains($0.needle) }) { return (match.hypervisor, match.cloud) }
        if vendor == "Microsoft Corporation" && product == "Virtual Machine" { return ("hyperv", nil) }
        return nil
    }

    /// The container runtime this process runs in, or nil.
    static func container(files: Files, environment: [String: String]) -> String? {
        if let named = environment["container"], !named.isEmpty { return named == "oci" ? "container" : named }
        if files.exists(".dockerenv") { return "docker" }
        if files.exists("run/.containerenv") { return "podman" }
        if environment["KUBERNETES_SERVICE_HOST"] != nil { return "kubernetes" }
        let cgroups = files.text("proc/1/cgroup") ?? ""
        for (needle, runtime) in [
            ("kubepods", "kubernetes"), ("docker", "docker"), ("libpod", "podman"), ("lxc", "lxc"), ("containerd", "containerd"),
        ]
        where cgroups.contains(needle) {
            return runtime
        }
        return nil
    }

    /// Files under a root.
    struct Files {
        let root: String

        func path(_ relative: String) -> String { (self.root as NSString).appendingPathComponent(relative) }

        func exists(_ relative: String) -> Bool { FileManager.default.fileExists(atPath: self.path(relative)) }

        func text(_ relative: String) -> String? { try? String(contentsOfFile: self.path(relative), encoding: .utf8) }

        func firstLine(_ relative: String) -> String? { MachineFingerprint.firstLine(of: self.path(relative)) }

        /// The flags of the first CPU in /proc/cpuinfo.
        var cpuFlags: Set<Substring> {
            guard let text = self.text("proc/cpuinfo"),
                let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
                let colon = line.firstIndex(of: ":")
            else { return [] }
            return Set(line[line.index(after: colon)...].split(separator: " "))
        }
    }
}

extension String {
    fileprivate var nonEmpty: String? { self.isEmpty ? nil : self }
}
