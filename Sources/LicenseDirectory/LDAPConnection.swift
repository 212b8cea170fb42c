import COpenLDAP
import Foundation

/// One connection to an LDAP server through OpenLDAP's client library: bind, paged subtree
/// searches, DN parsing. Blocking: used on a thread of its own, one sync at a time.
final class LDAPConnection {
    /// An entry: its DN and the values of the attributes asked for (by lower-case name).
    struct Entry {
        var dn: String
        var attributes: [String: [String]]

        func first(_ name: String) -> String? { name.isEmpty ? nil : self.attributes[name.lowercased()]?.first }
        func all(_ name: String) -> [String] { name.isEmpty ? [] : self.attributes[name.lowercased()] ?? [] }
    }

    private let handle: OpaquePointer
    let url: String
    let timeoutSeconds: Int

    /// Connects to `url` (StartTLS when asked), trusting `caFile` when set, and binds.
    init(url: String, settings: DirectorySettings, password: String) throws(DirectoryError) {
        self.url = url
        self.timeoutSeconds = settings.timeoutSeconds
        var ld: OpaquePointer?
        var rc = ldap_initialize(&ld, url)
        guard rc == LDAP_SUCCESS, let ld else { throw DirectoryError("\(url): \(Self.text(rc))") }
        self.handle = ld
        var version = LDAP_VERSION3
        ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version)
        _ = lc_ldap_no_referrals(ld)
        lc_ldap_set_timeouts(ld, Int32(settings.timeoutSeconds))
        if !settings.caFile.isEmpty {
            var demand = LDAP_OPT_X_TLS_DEMAND
            ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand)
            settings.caFile.withCString { path in _ = ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, path) }
            var isServer: Int32 = 0
            ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &isServer)
        }
        if settings.startTLS {
            rc = ldap_start_tls_s(ld, nil, nil)
            guard rc == LDAP_SUCCESS else { throw self.failure("StartTLS", rc) }
        }
        rc = lc_ldap_simple_bind(ld, settings.bindDN.isEmpty ? nil : settings.bindDN, password)
        guard rc == LDAP_SUCCESS else { throw self.failure(settings.bindDN.isEmpty ? "anonymous bind" : "bind as \(settings.bindDN)", rc) }
    }

    deinit { ldap_unbind_ext_s(self.handle, nil, nil) }

    /// Every entry under `base` matching `filter`, a page at a time, with `attributes`.
    func search(base: String, filter: String, attributes: [String], pageSize: Int) throws(DirectoryError) -> [Entry] {
        var entries: [Entry] = []
        var cookie = berval(bv_len: 0, bv_val: nil)
        var cookieStorage: UnsafeMutablePointer<berval>? = nil
        defer { if let cookieStorage { ber_bvfree(cookieStorage) } }
        var names = attributes.map { strdup($0) } + [nil]
        defer { for name in names { free(name) } }
        repeat {
            var result: OpaquePointer?
            var next: UnsafeMutablePointer<berval>?
            let rc = names.withUnsafeMutableBufferPointer { names in
                lc_ldap_search_page(
                    self.handle,
                    base,
                    lc_ldap_scope_subtree,
                    filter,
                    names.baseAddress,
                    Int32(pageSize),
                    &cookie,
                    Int32(self.timeoutSeconds),
                    &result,
                    &next
                )
            }
            defer { if let result { ldap_msgfree(result) } }
            if let cookieStorage { ber_bvfree(cookieStorage) }
            cookieStorage = next
            guard rc == LDAP_SUCCESS else { throw self.failure("search of '\(base)' for \(filter)", rc) }
            var message = ldap_first_entry(self.handle, result)
            while let current = message {
                entries.append(self.entry(current))
                message = ldap_next_entry(self.handle, current)
            }
            cookie = next?.pointee ?? berval(bv_len: 0, bv_val: nil)
        } while cookie.bv_len > 0
        return entries
    }

    private func entry(_ message: OpaquePointer) -> Entry {
        var dn = ""
        if let text = ldap_get_dn(self.handle, message) {
            dn = String(cString: text)
            ldap_memfree(text)
        }
        var attributes: [String: [String]] = [:]
        var position: OpaquePointer?
        var name = ldap_first_attribute(self.handle, message, &position)
        while let current = name {
            let key = String(cString: current).lowercased()
            if let values = ldap_get_values_len(self.handle, message, current) {
                var index = 0
                while let value = values[index] {
                    let bytes = UnsafeRawBufferPointer(start: value.pointee.bv_val, count: Int(value.pointee.bv_len))
                    attributes[key, default: []].append(String(decoding: bytes, as: UTF8.self))
                    index += 1
                }
                ldap_value_free_len(values)
            }
            ldap_memfree(current)
            name = ldap_next_attribute(self.handle, message, position)
        }
        if let position { ber_free(position, 0) }
        return Entry(dn: dn, attributes: attributes)
    }

    private func failure(_ what: String, _ rc: Int32) -> DirectoryError {
        var detail: UnsafeMutablePointer<CChar>?
        ldap_get_option(self.handle, LDAP_OPT_DIAGNOSTIC_MESSAGE, &detail)
        var text = "\(self.url): \(what) failed: \(Self.text(rc))"
        if let detail {
            let message = String(cString: detail)
            if !message.isEmpty { text += " (\(message))" }
            ldap_memfree(detail)
        }
        return DirectoryError(text)
    }

    static func text(_ rc: Int32) -> String { String(cString: ldap_err2string(rc)) }

    /// The RDNs of `dn`, outermost last, each as its (attribute, value) pairs — OpenLDAP's own
    /// DN parser (escapes, multi-valued RDNs); nil when the DN does not parse.
    static func components(of dn: String) -> [[(attribute: String, value: String)]]? {
        var parsed: UnsafeMutablePointer<LDAPRDN?>?
        guard ldap_str2dn(dn, &parsed, UInt32(LDAP_DN_FORMAT_LDAPV3)) == LDAP_SUCCESS else { return nil }
        defer { ldap_dnfree(parsed) }
        var rdns: [[(attribute: String, value: String)]] = []
        guard let parsed else { return [] }
        var index = 0
        while let rdn = parsed[index] {
            var pairs: [(attribute: String, value: String)] = []
            var avaIndex = 0
            while let ava = rdn[avaIndex] {
                pairs.append((Self.string(ava.pointee.la_attr), Self.string(ava.pointee.la_value)))
                avaIndex += 1
            }
            rdns.append(pairs)
            index += 1
        }
        return rdns
    }

    private static func string(_ value: berval) -> String {
        String(decoding: UnsafeRawBufferPointer(start: value.bv_val, count: Int(value.bv_len)), as: UTF8.self)
    }
}
