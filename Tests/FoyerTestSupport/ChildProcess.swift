import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A process started with `posix_spawn` and reaped with `waitpid`: the servers, and every
/// command a test runs to its end.
///
/// Written by hand instead of using Foundation's `Process`: on Linux its exit monitoring
/// did not report the exit of a terminated child while Swift Testing ran tests in
/// parallel, so `stop()` hung, and `Process.run()` has crashed inside its own `memcpy`.
/// Here nobody else reaps the child.
final class ChildProcess: @unchecked Sendable {
  let pid: pid_t
  private let lock = NSLock()
  private var reaped = false
  /// The exit status once reaped: the code, or 128 + the signal that ended it.
  private var exitStatus: Int32 = 0

  /// `descriptors` maps parent descriptors to child numbers ≥ 3 (e.g. Chromium's
  /// `--remote-debugging-pipe` reads 3 and writes 4); every other descriptor is closed in
  /// the child.
  init(
    executable: String, arguments: [String], environment: [String: String] = [:],
    outputPath: String = "/dev/null", errorPath: String? = nil, descriptors: [(parent: Int32, child: Int32)] = []
  ) throws {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errorPath ?? outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    // The child must not inherit this process's sockets: a copy kept open in a server
    // process keeps a test's connection alive after the test (or the gateway) closed it.
    // glibc ≥ 2.34 has `posix_spawn_file_actions_addclosefrom_np`; Swift's Glibc module does
    // not import it, so it is looked up by name.
    for (parent, child) in descriptors { posix_spawn_file_actions_adddup2(&actions, parent, child) }
    if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3 + Int32(descriptors.count)) }
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var merged = ProcessInfo.processInfo.environment
    merged.merge(environment) { $1 }
    let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for pointer in envp { free(pointer) } }
    var pid: pid_t = 0
    let status = posix_spawn(&pid, executable, &actions, nil, argv, envp)
    guard status == 0 else {
      throw TestServiceError("cannot start \(executable): \(String(cString: strerror(status)))")
    }
    self.pid = pid
    Self.register(pid)
  }

  private typealias AddCloseFrom =
    @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
  private static let addCloseFrom: AddCloseFrom? = {
    #if os(Linux)
    guard
      let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
    else { return nil }
    return unsafeBitCast(symbol, to: AddCloseFrom.self)
    #else
    return nil
    #endif
  }()

  /// Every child still alive is killed when the test process exits, even if a test kept
  /// its server object alive to the end.
  private static let living = NSLock()
  nonisolated(unsafe) private static var pids = Set<pid_t>()
  nonisolated(unsafe) private static var installed = false

  private static func register(_ pid: pid_t) {
    living.withLock {
      pids.insert(pid)
      if !installed {
        installed = true
        atexit { ChildProcess.living.withLock { for pid in ChildProcess.pids { kill(pid, SIGKILL) } } }
      }
    }
  }

  private static func unregister(_ pid: pid_t) {
    _ = living.withLock { pids.remove(pid) }
  }

  /// Whether the process is still running (reaps it if it has exited).
  var isRunning: Bool {
    lock.withLock {
      if reaped { return false }
      var status: Int32 = 0
      if waitpid(pid, &status, WNOHANG) == pid { reap(status) }
      return !reaped
    }
  }

  /// Blocks until the process has exited; its exit status.
  func waitForExit() -> Int32 {
    lock.withLock {
      var status: Int32 = 0
      while !reaped {
        if waitpid(pid, &status, 0) == pid { reap(status) } else if errno != EINTR { reaped = true }
      }
      return exitStatus
    }
  }

  private func reap(_ status: Int32) {
    reaped = true
    exitStatus = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f
    Self.unregister(pid)
  }

  func signal(_ signal: Int32) {
    lock.withLock { if !reaped { _ = kill(pid, signal) } }
  }

  /// SIGTERM, then waits (without blocking a thread) up to 5 s before SIGKILL.
  func terminate() async {
    signal(SIGTERM)
    for _ in 0..<500 {
      if !isRunning { return }
      try? await Task.sleep(for: .milliseconds(10))
    }
    signal(SIGKILL)
    while isRunning { try? await Task.sleep(for: .milliseconds(10)) }
  }
}

/// Runs `executable` to its end and returns its exit status and everything it printed
/// (standard output and error together, unless `separateErrors`: then standard output
/// alone). `environment` is added to this process's.
public func runToEnd(
  _ executable: String, _ arguments: [String], environment: [String: String] = [:], separateErrors: Bool = false
) throws -> (status: Int32, output: String) {
  let output = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString).out")
  defer { try? FileManager.default.removeItem(at: output) }
  let child = try ChildProcess(
    executable: executable, arguments: arguments, environment: environment, outputPath: output.path,
    errorPath: separateErrors ? "/dev/null" : nil)
  let status = child.waitForExit()
  let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
  return (status, text)
}
