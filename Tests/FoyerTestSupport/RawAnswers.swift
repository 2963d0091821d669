import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 answer read off raw bytes: what an attack test checks, answer by answer.
public struct RawAnswer: Sendable, CustomStringConvertible {
  public var status: Int
  /// Lowercased names, in order.
  public var headers: [(name: String, value: String)]
  public var body: [UInt8]

  public var text: String { String(decoding: body, as: UTF8.self) }
  public func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
  public var description: String { "\(status) \(text.prefix(120))" }

  /// The complete answers at the start of `bytes` (Content-Length or chunked bodies; `HEAD`
  /// answers are not told apart, so corpora avoid them), and whether bytes were left over.
  public static func parse(_ bytes: [UInt8]) -> (answers: [RawAnswer], rest: Int) {
    var answers: [RawAnswer] = []
    var index = 0
    func line(from start: Int) -> (String, Int)? {
      var cursor = start
      while cursor + 1 < bytes.count {
        if bytes[cursor] == 13 && bytes[cursor + 1] == 10 {
          return (String(decoding: bytes[start..<cursor], as: UTF8.self), cursor + 2)
        }
        cursor += 1
      }
      return nil
    }
    parsing: while index < bytes.count {
      guard let (statusLine, afterStatus) = line(from: index) else { break }
      let parts = statusLine.split(separator: " ", maxSplits: 2)
      guard parts.count >= 2, let status = Int(parts[1]) else { break }
      var cursor = afterStatus
      var headers: [(String, String)] = []
      while true {
        guard let (field, next) = line(from: cursor) else { break parsing }
        cursor = next
        if field.isEmpty { break }
        guard let colon = field.firstIndex(of: ":") else { break parsing }
        headers.append(
          (field[..<colon].lowercased(), String(field[field.index(after: colon)...].drop { $0 == " " })))
      }
      var body: [UInt8] = []
      if status < 200 || status == 204 || status == 304 {
        // no body
      } else if headers.contains(where: { $0.0 == "transfer-encoding" }) {
        while true {
          guard let (size, next) = line(from: cursor),
            let length = Int(size.split(separator: ";").first ?? "", radix: 16)
          else { break parsing }
          cursor = next
          if length == 0 {
            while true {
              guard let (trailer, after) = line(from: cursor) else { break parsing }
              cursor = after
              if trailer.isEmpty { break }
            }
            break
          }
          guard cursor + length + 2 <= bytes.count else { break parsing }
          body += bytes[cursor..<(cursor + length)]
          cursor += length + 2
        }
      } else {
        let length = headers.first { $0.0 == "content-length" }.flatMap { Int($0.1) } ?? 0
        guard cursor + length <= bytes.count else { break }
        body = Array(bytes[cursor..<(cursor + length)])
        cursor += length
      }
      answers.append(RawAnswer(status: status, headers: headers, body: body))
      index = cursor
    }
    return (answers, bytes.count - index)
  }
}

/// Sends `bytes` on a new loopback connection and reads until `answers` complete answers
/// have come and nothing more for `quiet` seconds, the server closes, or `timeout` passes;
/// also tells whether it closed.
public func rawAnswers(
  port: Int, send bytes: [UInt8], answers expected: Int, timeout: Double = 3, quiet: Double = 0.2
) async -> (answers: [RawAnswer], closed: Bool) {
  let (received, closed) = await exchange(port: port, send: bytes, timeout: timeout, quiet: quiet) {
    RawAnswer.parse($0).answers.count >= expected
  }
  return (RawAnswer.parse(received).answers, closed)
}

/// Sends `bytes` on a new loopback connection and returns every byte that came back until
/// nothing more came for `quiet` seconds (once something came), the server closed, or
/// `timeout` passed; and whether it closed. For tests that compare answers byte for byte.
public func rawReply(
  port: Int, send bytes: [UInt8], timeout: Double = 3, quiet: Double = 0.3
) async -> (bytes: [UInt8], closed: Bool) {
  await exchange(port: port, send: bytes, timeout: timeout, quiet: quiet) { !$0.isEmpty }
}

/// `rawReply` that keeps reading until the bytes hold at least `answers` status lines (a
/// pipelined exchange answered slowly on a loaded machine must not be cut short by a quiet
/// spell between two of its answers), then until a quiet spell.
public func rawReply(
  port: Int, send bytes: [UInt8], answers: Int, timeout: Double = 10, quiet: Double = 0.3
) async -> (bytes: [UInt8], closed: Bool) {
  let marker = Array("HTTP/1.".utf8)
  return await exchange(port: port, send: bytes, timeout: timeout, quiet: quiet) { received in
    var count = 0
    var index = received.startIndex
    while index + marker.count <= received.endIndex {
      if received[index..<index + marker.count].elementsEqual(marker) {
        count += 1
        index += marker.count
      } else {
        index += 1
      }
    }
    return count >= answers
  }
}

/// Sends, then reads until a quiet spell once `enough` says so, a close, or the timeout.
private func exchange(
  port: Int, send bytes: [UInt8], timeout: Double, quiet: Double,
  enough: @escaping @Sendable ([UInt8]) -> Bool
) async -> (bytes: [UInt8], closed: Bool) {
  await offPool {
    guard let fd = connectLoopback(port: port) else { return ([], true) }
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    let deadline = clockSeconds() + timeout
    while true {
      let left = deadline - clockSeconds()
      if left <= 0 { break }
      var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      guard poll(&poller, 1, Int32(min(left, quiet) * 1_000)) >= 0 else { break }
      if poller.revents == 0 {
        if enough(received) { return (received, false) }
        continue
      }
      let count = recv(fd, &buffer, buffer.count, 0)
      if count <= 0 { return (received, true) }
      received += buffer[0..<count]
    }
    return (received, false)
  }
}

private func clockSeconds() -> Double { ProcessInfo.processInfo.systemUptime }

/// A client that pipelines `request` over and over and never reads an answer: how many bytes
/// it got the server to take before the server stopped reading (no progress for a second),
/// or `nil` if the server was still taking them after `limit` bytes or `seconds`.
public func bytesTakenFromAClientThatNeverReads(
  port: Int, request: String, limit: Int = 32 << 20, seconds: Double = 30
) async -> Int? {
  await offPool {
    guard let fd = connectLoopback(port: port) else { return nil }
    defer { close(fd) }
    var small: Int32 = 16_384
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    let batch = Array(String(repeating: request, count: max(1, 16_384 / request.utf8.count)).utf8)
    var sent = 0
    let started = clockSeconds()
    var lastProgress = started
    while sent < limit && clockSeconds() - started < seconds {
      let count = batch.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if count > 0 {
        sent += count
        lastProgress = clockSeconds()
        continue
      }
      if clockSeconds() - lastProgress > 1 { return sent }
      usleep(10_000)
    }
    return nil
  }
}
