import ArgumentParser

/// The command-line tool for everything but the daemon itself.
@main
struct Licensectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licensectl",
        abstract: "Keys, licence files and the licence server, from the command line.",
        subcommands: [Keys.self, License.self, Ping.self]
    )
}

/// A failure to report in one line on stderr with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { self.message }
}
