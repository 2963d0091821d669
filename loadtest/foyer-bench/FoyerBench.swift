import ArgumentParser

/// Benchmark drivers. Each prints figures; the scripts in `loadtest/` run them side by side
/// with the reference tool (redis-benchmark, nginx) and print the ratios.
@main
struct FoyerBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "foyer-bench",
    abstract: "Foyer's benchmark drivers (run through the loadtest/bench-* scripts).",
    subcommands: [
      RedisBench.self, TokenBench.self, RoomBench.self, PassCommand.self, VisitorTokensCommand.self,
      BoxOfficeBench.self, CheckInBench.self, ClusterBench.self, JoinWaitBench.self, ShardBench.self,
    ]
  )
}
