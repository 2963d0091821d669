public import Foundation
public import RedisNIO

/// A throwaway `redis-server` on a free loopback port, in a temporary directory.
///
/// Tests use the shared one (`RedisServer.shared()`), which is the server `make test` started
/// (`FOYER_TEST_REDIS_URL`) or, under a plain `swift test`, one started here. Tests that
/// stop or restart Redis start their own with `RedisServer.start()`.
public final class RedisServer: @unchecked Sendable {
  public let port: Int
  public let directory: URL
  private let lock = NSLock()
  private var process: ChildProcess?

  public var url: String { "redis://127.0.0.1:\(port)" }
  public var configuration: RedisConfiguration { try! RedisConfiguration(url: url) }

  private init(port: Int, directory: URL) {
    self.port = port
    self.directory = directory
  }

  /// The URL of the suite's shared server.
  public static func sharedURL() throws -> String {
    if let url = ProcessInfo.processInfo.environment["FOYER_TEST_REDIS_URL"], !url.isEmpty { return url }
    return try sharedServer.get().url
  }

  /// Started once, on first use; the wait is a few tens of milliseconds.
  private static let sharedServer: Result<RedisServer, any Error> = Result {
    let server = try prepare(extraArguments: [])
    try server.spawn()
    try waitUntilAccepting(port: server.port, timeout: 10)
    atexit { RedisServer.stopShared() }
    return server
  }

  /// Runs at exit: signal only. Waiting for the child inside `atexit` can hang, because
  /// Foundation's process monitoring is already being torn down.
  private static func stopShared() {
    if case .success(let server) = sharedServer { server.process?.signal(SIGTERM) }
  }

  /// Starts a new server; fails with an install hint when `redis-server` is missing.
  public static func start(extraArguments: [String] = []) async throws -> RedisServer {
    // redis-server exits when its port was taken, and a test would speak RESP to whatever holds it.
    try await startingAgainOnTakenPorts("redis-server") {
      let server = try prepare(extraArguments: extraArguments)
      do {
        try await server.launch()
      } catch let error as PortTaken {
        await server.stop()
        throw error
      }
      return server
    }
  }

  private static func prepare(extraArguments: [String]) throws -> RedisServer {
    guard let executable = findExecutable("redis-server") else {
      throw TestServiceError(
        "redis-server is not installed: run `make test` (it installs it) or `apt-get install -y redis-server`"
      )
    }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "foyer-redis-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let server = RedisServer(port: try freeLoopbackPort(), directory: directory)
    server.executable = executable
    server.extraArguments = extraArguments
    return server
  }

  private var executable = ""
  private var extraArguments: [String] = []

  private func spawn() throws {
    let process = try ChildProcess(
      executable: executable,
      arguments: [
        "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", directory.path, "--daemonize", "no", "--loglevel", "warning",
      ] + extraArguments,
      outputPath: directory.appendingPathComponent("redis.log").path)
    lock.withLock { self.process = process }
  }

  private func launch() async throws {
    try spawn()
    // Polls with async sleeps: blocking here would stall Swift Testing's small thread pool.
    for _ in 0..<500 {
      let running = lock.withLock { process?.isRunning ?? false }
      if canConnect(port: port) {
        let port = port
        guard running, await offPool({ answersInRESP(port: port) }) else { throw PortTaken() }
        return
      }
      guard running else { throw PortTaken() }
      try await Task.sleep(for: .milliseconds(20))
    }
    throw TestServiceError("redis-server did not accept connections on port \(port) within 10 s")
  }

  public var isRunning: Bool { lock.withLock { process != nil } }

  /// Signals the server to stop without waiting (for `atexit`, where waiting can hang).
  func signalStop() { lock.withLock { process }?.signal(SIGTERM) }

  /// Kills the server at once (SIGKILL), as a crash would.
  public func kill() async {
    let process = lock.withLock { () -> ChildProcess? in
      defer { self.process = nil }
      return self.process
    }
    process?.signal(SIGKILL)
    await process?.terminate()
  }

  /// Stops the server (SIGTERM, then waits for it to exit without blocking a thread).
  public func stop() async {
    let process = lock.withLock { () -> ChildProcess? in
      defer { self.process = nil }
      return self.process
    }
    await process?.terminate()
  }

  /// Starts again after `kill()` or `stop()`, on the same port and directory (what it
  /// persisted there, AOF or a cluster's `nodes.conf`, it finds again).
  public func startAgain() async throws {
    try await relaunch()
  }

  /// Stops and starts again on the same port (data is not kept: no persistence).
  public func restart() async throws {
    await stop()
    try await relaunch()
  }

  private func relaunch() async throws {
    do { try await launch() } catch is PortTaken {
      throw TestServiceError("redis-server could not have port \(port) again: something else took it")
    }
  }

  deinit {
    process?.signal(SIGKILL)
    try? FileManager.default.removeItem(at: directory)
  }
}

public struct TestServiceError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// Looks `name` up on PATH (and the usual sbin folders, where Debian puts some servers).
public func findExecutable(_ name: String) -> String? {
  let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
  let folders = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin", "/sbin"]
  for folder in folders {
    let candidate = folder + "/" + name
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
  }
  return nil
}

/// Calls of Redis command `command` (lowercase, as `INFO commandstats` names it) so far: what
/// a test counts to show that a path issued no Redis work.
public func redisCalls(_ command: String, on redis: RedisClient) async throws -> Int {
  let info = try await redis.send(RedisCommand("INFO", "commandstats")).string ?? ""
  guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_\(command):") }),
    let calls = line.split(separator: ",").first?.split(separator: "=").last
  else { return 0 }
  return Int(calls) ?? 0
}

/// Whether what listens on `port` answers a `PING` in RESP (`+PONG`, or an error such as
/// `-NOAUTH`): an HTTP server answers otherwise, or not at all within a second.
private func answersInRESP(port: Int) -> Bool {
  guard let fd = connectLoopback(port: port) else { return false }
  defer { close(fd) }
  var timeout = timeval(tv_sec: 1, tv_usec: 0)
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  let ping = Array("PING\r\n".utf8)
  guard send(fd, ping, ping.count, 0) == ping.count else { return false }
  var reply = [UInt8](repeating: 0, count: 16)
  let read = recv(fd, &reply, reply.count, 0)
  return read > 0 && (reply[0] == UInt8(ascii: "+") || reply[0] == UInt8(ascii: "-"))
}
