import Foundation
import Testing

@testable import LicenseHost

/// Detection of where a process runs, from recorded `/sys` and `/proc` files (Fixtures/<case>/…:
/// what those machines show, reduced to the files detection reads).
@Suite("Host environment")
struct HostEnvironmentTests {
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    static func detect(_ name: String, environment: [String: String] = [:]) -> HostEnvironment {
        HostEnvironment.detect(root: Self.fixture(name), environment: environment)
    }

    @Test("bare metal: a Dell server, no hypervisor flag, no container")
    func bareMetal() {
        let found = Self.detect("bare-metal")
        #expect(found == HostEnvironment(machine: .physical))
        #expect(found.kinds == ["physical"])
        #expect(found.description == "physical machine")
    }

    @Test("KVM: QEMU in DMI, the hypervisor flag, and kvm-clock")
    func kvm() {
        let found = Self.detect("kvm")
        #expect(found.machine == .virtual && found.hypervisor == "kvm" && found.cloud == nil && found.container == nil)
        #expect(found.kinds == ["virtual"])
        #expect(found.description == "virtual machine (kvm)")
    }

    @Test("VMware: named by DMI")
    func vmware() {
        let found = Self.detect("vmware")
        #expect(found.machine == .virtual && found.hypervisor == "vmware" && found.container == nil)
    }

    @Test("a Docker container on a physical host: /.dockerenv and the cgroups of process 1")
    func docker() {
        let found = Self.detect("docker")
        #expect(found.machine == .physical && found.container == "docker")
        #expect(found.kinds == ["physical", "container"])
        #expect(found.description == "physical machine, container (docker)")
        // The `container` variable (systemd-nspawn, podman, lxc set it) names the runtime first.
        #expect(Self.detect("bare-metal", environment: ["container": "systemd-nspawn"]).container == "systemd-nspawn")
        #expect(Self.detect("bare-metal", environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1"]).container == "kubernetes")
    }

    @Test("a cloud VM: AWS EC2 names itself in DMI, the instance id in the board's asset tag")
    func awsInstance() {
        let found = Self.detect("aws-ec2")
        #expect(found.machine == .virtual && found.hypervisor == "amazon")
        #expect(found.cloud == "aws" && found.instanceID == "i-0a1b2c3d4e5f60718")
        #expect(found.description == "virtual machine (amazon), cloud aws instance i-0a1b2c3d4e5f60718")
    }

    @Test("platform strings of other hypervisors and clouds")
    func platforms() {
        #expect(
            HostEnvironment.platform(vendor: "Microsoft Corporation", product: "Virtual Machine", bios: "", chassisTag: "")! == (
                "hyperv", nil
            )
        )
        #expect(
            HostEnvironment.platform(
                vendor: "Microsoft Corporation",
                product: "Virtual Machine",
                bios: "",
                chassisTag: "7783-7084-3265-9085-8269-3286-77"
            )!
                == ("hyperv", "azure")
        )
        #expect(
            HostEnvironment.platform(vendor: "Google", product: "Google Compute Engine", bios: "Google", chassisTag: "")! == (
                "google", "gcp"
            )
        )
        #expect(
            HostEnvironment.platform(vendor: "innotek GmbH", product: "VirtualBox", bios: "innotek GmbH", chassisTag: "")! == (
                "virtualbox", nil
            )
        )
        #expect(HostEnvironment.platform(vendor: "Dell Inc.", product: "PowerEdge R650", bios: "Dell Inc.", chassisTag: "") == nil)
    }

    @Test("nothing readable (an empty root): a physical machine, as before detection existed")
    func nothingReadable() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("empty-root-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        #expect(HostEnvironment.detect(root: empty.path, environment: [:]) == HostEnvironment(machine: .physical))
    }
}
