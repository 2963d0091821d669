public import Foundation

/// A `foyer gateway` process, the binary `swift build --build-tests` put next to the test
/// runner: for tests that need a second gateway as operators run it (own process, own
/// admission loop, own admin API).
public final class GatewayProcess: @unchecked Sendable {
  public let port: Int
  public let adminPort: Int
  public let logPath: String
  private let process: ChildProcess

  /// The `foyer` binary next to the test runner.
  public static func executable() throws -> String {
    let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var directory = runner.deletingLastPathComponent()
    // On macOS the runner sits inside an .xctest bundle.
    while directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent() }
    let executable = directory.appendingPathComponent("foyer").path
    guard FileManager.default.isExecutableFile(atPath: executable) else {
      throw TestServiceError("\(executable) is missing: build it first (`swift build --build-tests`)")
    }
    return executable
  }

  /// Starts the gateway and waits until both listeners accept.
  public static func start(
    redisURL: String, rooms: [String], upstream: String?, keys: String, adminToken: String,
    extraArguments: [String] = []
  ) async throws -> GatewayProcess {
    try await startingAgainOnTakenPorts("foyer gateway") {
      try await launch(
        redisURL: redisURL, rooms: rooms, upstream: upstream, keys: keys, adminToken: adminToken,
        extraArguments: extraArguments)
    }
  }

  private static func launch(
    redisURL: String, rooms: [String], upstream: String?, keys: String, adminToken: String,
    extraArguments: [String]
  ) async throws -> GatewayProcess {
    let executable = try executable()
    let port = try freeLoopbackPort()
    let adminPort = try freeLoopbackPort()
    var arguments = [
      "gateway", "--host", "127.0.0.1", "--port", String(port), "--admin-port", String(adminPort),
      "--redis", redisURL, "--threads", "1",
    ]
    for room in rooms { arguments += ["--room", room] }
    if let upstream { arguments += ["--upstream", upstream] }
    let logPath = FileManager.default.temporaryDirectory.appendingPathComponent(
      "foyer-gateway-\(UUID().uuidString).log"
    ).path
    let process = try ChildProcess(
      executable: executable, arguments: arguments + extraArguments,
      environment: ["FOYER_KEYS": keys, "FOYER_ADMIN_TOKEN": adminToken], outputPath: logPath)
    let gateway = GatewayProcess(port: port, adminPort: adminPort, logPath: logPath, process: process)
    for _ in 0..<500 {
      // Its own log says it listens: something else may accept on a port it could not bind.
      let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
      if process.isRunning, log.contains("admin API listening"), log.contains("gateway listening"),
        canConnect(port: port), canConnect(port: adminPort)
      {
        return gateway
      }
      guard process.isRunning else { break }
      try await Task.sleep(for: .milliseconds(20))
    }
    let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    await process.terminate()
    if log.contains("Address already in use") { throw PortTaken() }
    throw TestServiceError("foyer gateway did not start within 10 s; its log:\n\(log.suffix(2_000))")
  }

  private init(port: Int, adminPort: Int, logPath: String, process: ChildProcess) {
    self.port = port
    self.adminPort = adminPort
    self.logPath = logPath
    self.process = process
  }

  public var isRunning: Bool { process.isRunning }

  /// SIGTERM: the gateway drains and exits.
  public func stop() async { await process.terminate() }

  /// SIGKILL, as a crash: nothing drains.
  public func kill() async {
    process.signal(SIGKILL)
    await process.terminate()
  }

  deinit {
    process.signal(SIGKILL)
    try? FileManager.default.removeItem(atPath: logPath)
  }
}
