import LicenseProtocol
public import NIOCore
public import NIOSSL

/// TLS for a client connection: which CAs to trust (default: the system's), and for servers that
/// ask for client certificates (mTLS) this client's certificate and key.
public struct ClientTLS: Sendable, Equatable {
    /// PEM file of CA certificates that sign the server's certificate; nil = the system's trust store.
    public var caFile: String?
    /// PEM certificate chain presented to servers that require client certificates.
    public var certificateFile: String?
    /// PEM private key of `certificateFile`.
    public var privateKeyFile: String?
    /// Name checked against the server certificate; nil = the host connected to.
    public var serverName: String?

    /// Creates TLS settings.
    public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.serverName = serverName
    }

    /// The name to check the certificate of `host` against: `serverName`, else the host itself
    /// unless it is an IP address (nil: no name check beyond the CA).
    public func serverName(forHost host: String) -> String? {
        self.serverName ?? (host.first?.isNumber == true || host.contains(":") ? nil : host)
    }

    /// The NIOSSL context these settings describe.
    public func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if let caFile { configuration.trustRoots = .file(caFile) }
        if let certificateFile {
            guard let privateKeyFile else {
                throw LicenseClientError.invalidArgument("a client certificate needs its private key file")
            }
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: privateKeyFile, format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// The client end of a licence-server connection below the caller's own handler: TLS when a
    /// context is given (checking `serverName`), then the protocol's length-prefixed framing.
    public func addLicenseFraming(tls: NIOSSLContext?, serverName: String?, maximumFrameLength: Int) throws {
        if let tls { try self.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
        try self.addHandler(ByteToMessageHandler(FrameDecoder(maximumFrameLength: maximumFrameLength)))
    }
}
