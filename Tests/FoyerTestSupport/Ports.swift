public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Ports already handed out in this process: the kernel may offer a port again as soon as
/// the probe socket closes, and two servers started side by side must not get the same one.
private let handedOut = NSLock()
nonisolated(unsafe) private var usedPorts = Set<Int>()

/// A TCP port on 127.0.0.1 that nothing listens on right now and that this process has not
/// handed out before (the kernel picks it).
public func freeLoopbackPort() throws -> Int {
  for _ in 0..<100 {
    let port = try kernelPickedPort()
    let fresh = handedOut.withLock { usedPorts.insert(port).inserted }
    if fresh { return port }
  }
  throw TestServiceError("no fresh loopback port after 100 tries")
}

private func kernelPickedPort() throws -> Int {
  #if canImport(Glibc)
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  #else
  let fd = socket(AF_INET, SOCK_STREAM, 0)
  #endif
  guard fd >= 0 else { throw TestServiceError("socket() failed") }
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = 0
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
  }
  guard bound == 0 else { throw TestServiceError("bind() failed") }
  let named = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
  }
  guard named == 0 else { throw TestServiceError("getsockname() failed") }
  return Int(UInt16(bigEndian: address.sin_port))
}

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
public func waitUntilAccepting(port: Int, timeout: TimeInterval) throws {
  let deadline = Date().addingTimeInterval(timeout)
  while Date() < deadline {
    if canConnect(port: port) { return }
    usleep(20_000)
  }
  throw TestServiceError("nothing accepted connections on 127.0.0.1:\(port) within \(timeout) s")
}

public func canConnect(port: Int) -> Bool {
  guard let fd = connectLoopback(port: port) else { return false }
  close(fd)
  return true
}

/// A TCP socket connected to 127.0.0.1:`port`, or `nil`; the caller closes it, once.
public func connectLoopback(port: Int) -> Int32? {
  #if canImport(Glibc)
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  #else
  let fd = socket(AF_INET, SOCK_STREAM, 0)
  #endif
  guard fd >= 0 else { return nil }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = UInt16(port).bigEndian
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  let result = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
      connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
    }
  }
  guard result == 0 else {
    close(fd)
    return nil
  }
  return fd
}

/// Runs blocking work (socket reads with timeouts) on a thread of its own: Swift Testing's
/// cooperative pool has as many threads as cores (two here), and a test blocking one starves
/// every other test's tasks.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    let thread = Thread { continuation.resume(returning: body()) }
    thread.start()
  }
}

/// A server found the port picked for it taken: a listener binding port 0 can get a port
/// between `freeLoopbackPort()` and the server's own bind.
struct PortTaken: Error {}

/// Starts a server on freshly picked ports (`start` picks them), again on new ones while a
/// start ends in `PortTaken`.
func startingAgainOnTakenPorts<Server>(
  _ name: String, attempts: Int = 5, _ start: () async throws -> Server
) async throws -> Server {
  for _ in 0..<attempts {
    do { return try await start() } catch is PortTaken { continue }
  }
  throw TestServiceError("\(name) found its port taken \(attempts) times")
}
