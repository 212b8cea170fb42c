import DequeModule
import Foundation
import HeapModule
public import LicenseProtocol

extension SeatLedger {
    /// Per-feature usage and per-licence state, as the protocol's StatusResponse carries them.
    /// With `includeLicenses`, node-locked licences are listed too, and each licence's terms.
    public func status(features filter: [String] = [], includeHolders: Bool, includeLicenses: Bool = false, at nowMs: Int64)
        -> Licensed_V1_StatusResponse
    {
        var response = Licensed_V1_StatusResponse()
        let wanted = Set(filter)
        // Licensed features, and any feature still held (every lease charges its pool's counter;
        // a walk over the leases cost 100 ms a request at a million leases).
        var featureNames = Set(self.poolsByFeature.keys)
        for (key, usage) in self.usage where usage.seats > 0 { featureNames.insert(key.feature) }
        var holdersByFeature: [String: [Licensed_V1_Holder]] = [:]
        if includeHolders {
            for lease in self.leases.values where wanted.isEmpty || wanted.contains(lease.feature) {
                holdersByFeature[lease.feature, default: []].append(self.holder(of: lease))
            }
        }
        for name in featureNames.sorted() where wanted.isEmpty || wanted.contains(name) {
            var feature = Licensed_V1_FeatureStatus()
            feature.feature = name
            let capacity = self.capacity(of: name, at: nowMs)
            feature.unlimited = capacity == nil
            feature.capacity = capacity ?? 0
            let usage = self.usage(of: name)
            feature.inUse = usage.seats
            feature.overage = usage.overage
            feature.queued = UInt32(self.queues[name]?.count ?? 0)
            feature.holders = (holdersByFeature[name] ?? []).sorted {
                $0.sinceMs != $1.sinceMs ? $0.sinceMs < $1.sinceMs : $0.leaseID.lexicographicallyPrecedes($1.leaseID)
            }
            response.features.append(feature)
        }
        let listed = includeLicenses ? self.pools.merging(self.nodeLocked) { floating, _ in floating } : self.pools
        for id in listed.keys.sorted() {
            let pool = listed[id]!
            var status = Licensed_V1_LicenseStatus()
            status.licenseID = id
            status.expiresAtMs = pool.license.notAfterMs
            if pool.license.trialDays > 0, let started = self.trialStarts[id] {
                status.expiresAtMs = started + Int64(pool.license.trialDays) * 86_400_000
            }
            status.features = pool.license.features.map(\.name)
            status.file = pool.verified.file
            status.state = self.state(of: pool, at: nowMs)
            if includeLicenses { status.license = pool.license }
            if status.state == .compliant, pool.hard,
                pool.features.contains(where: {
                    (self.usage[PoolKey(licenseID: id, feature: $0.key)]?.seats ?? 0) > $0.value.count && $0.value.tokenCost == 0
                })
            {
                status.state = .atRisk
            }
            response.licenses.append(status)
        }
        response.sessions = UInt32(self.sessions.values.filter(\.attached).count)
        return response
    }

    /// A lease as status and lease listings show it (shared seats marked).
    public func holder(of lease: Lease) -> Licensed_V1_Holder {
        var holder = Self.holder(lease)
        if lease.sharedSeats > 0 {
            let key = DupKey(licenseID: lease.licenseID, feature: lease.feature, identity: lease.dupIdentity)
            holder.shared = (self.dupGroups[key]?.members.count ?? 0) > 1
        }
        return holder
    }

    static func holder(_ lease: Lease) -> Licensed_V1_Holder {
        var holder = Licensed_V1_Holder()
        holder.leaseID = .init(lease.id.bytes)
        holder.user = lease.identity.user
        holder.host = lease.identity.host
        holder.count = lease.count
        holder.sinceMs = lease.grantedAtMs
        holder.expiresAtMs = lease.expiresAtMs
        holder.overage = lease.overage
        holder.borrowed = lease.borrowed
        holder.licenseID = lease.licenseID
        holder.fencingToken = lease.fencingToken
        holder.address = lease.identity.address
        return holder
    }
}
