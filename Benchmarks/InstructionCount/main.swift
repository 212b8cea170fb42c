// Runs COUNT operations of one kind after the same setup, for valgrind's callgrind: the
// difference between two counts' instruction totals, divided by the difference in COUNT, is the
// instructions of one operation (setup and process start cancel out). scripts/bench-micro.
//   licensed-micro checkout|checkin|heartbeat|wal-grant|wal-release|audit|request|serve|serve-thresholds|serve-wide COUNT
import Foundation
import HotPathOperations
import LicenseCore
import NIOCore

let arguments = CommandLine.arguments
guard arguments.count == 3, let count = Int(arguments[2]), count >= 0 else {
    FileHandle.standardError.write(
        Data(
            "usage: licensed-micro checkout|checkin|heartbeat|wal-grant|wal-release|audit|request|serve|serve-thresholds|serve-wide COUNT\n"
                .utf8
        )
    )
    exit(64)
}
var ledger = LedgerOperations()
var sink = 0
switch arguments[1] {
case "checkout":
    for _ in 0..<count { sink &+= ledger.checkOut().changes.count }
case "checkin":
    let granted = (0..<count).map { _ in ledger.checkOut().lease.id }
    for id in granted { sink &+= ledger.checkIn(id).changes.count }
case "heartbeat":
    let held = [ledger.checkOut().lease.id]
    for _ in 0..<count { sink &+= ledger.heartbeat(held).renewed }
case "wal-grant", "wal-release":
    let granted = ledger.checkOut()
    let change = arguments[1] == "wal-grant" ? granted.changes[0] : ledger.checkIn(granted.lease.id).changes[0]
    var buffer: [UInt8] = []
    buffer.reserveCapacity(count * 300)
    for index in 0..<count { WalRecordOperation.append(change, sequence: UInt64(index), into: &buffer) }
    sink = buffer.count
case "audit":
    let grant = ledger.checkOut()
    let audit = try AuditOperations()
    for _ in 0..<count { try audit.record(grant.changes[0], by: grant.lease.identity, leases: [], atMs: ledger.nowMs) }
    try audit.flush()
case "request":
    let lease = ledger.checkOut().lease
    let requests = RequestOperations()
    for _ in 0..<count { sink &+= requests.answer(with: lease).readableBytes }
case "serve", "serve-thresholds", "serve-wide":
    // serve-wide: the default thresholds, and 1,000 other features each with a seat held.
    let serve = try ServeOperations(thresholds: arguments[1] != "serve", otherFeatures: arguments[1] == "serve-wide" ? 1_000 : 0)
    for _ in 0..<count { sink &+= try serve.pair() }
default:
    FileHandle.standardError.write(Data("licensed-micro: unknown operation '\(arguments[1])'\n".utf8))
    exit(64)
}
print(sink)
