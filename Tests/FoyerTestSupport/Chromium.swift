public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A headless Chromium driven over the DevTools protocol through `--remote-debugging-pipe`
/// (NUL-separated JSON on descriptors 3 and 4): no WebSocket client, no driver binary.
///
/// Written by hand because no DevTools client is among the allowed packages; it implements
/// only what the journey test needs: pages, navigation, script evaluation, screenshots, and
/// collecting console errors and uncaught exceptions.
public final class Chromium: @unchecked Sendable {
  private let process: ChildProcess
  private let toBrowser: Int32
  private let fromBrowser: Int32
  private let lock = NSLock()
  private var nextID = 0
  private var waiting: [Int: CheckedContinuation<[String: Any], any Error>] = [:]
  private var errors: [String] = []
  private let profile: URL

  /// Console errors and uncaught exceptions seen so far, in any page.
  public var consoleErrors: [String] { lock.withLock { errors } }

  public static func start() throws -> Chromium {
    guard let executable = findExecutable("chromium") ?? findExecutable("chromium-browser") else {
      throw TestServiceError(
        "chromium is not installed: run `make test` (it installs it) or `apt-get install -y chromium`")
    }
    return try Chromium(executable: executable)
  }

  private init(executable: String) throws {
    var input: [Int32] = [0, 0]
    var output: [Int32] = [0, 0]
    guard pipe(&input) == 0, pipe(&output) == 0 else { throw TestServiceError("pipe() failed") }
    profile = FileManager.default.temporaryDirectory.appendingPathComponent(
      "foyer-chromium-\(UUID().uuidString)")
    process = try ChildProcess(
      executable: executable,
      arguments: [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--disable-extensions", "--remote-debugging-pipe", "--hide-scrollbars",
        "--user-data-dir=\(profile.path)", "--window-size=1200,1000", "about:blank",
      ],
      outputPath: profile.path + ".log", descriptors: [(input[0], 3), (output[1], 4)])
    close(input[0])
    close(output[1])
    toBrowser = input[1]
    fromBrowser = output[0]
    let thread = Thread { [weak self] in self?.readLoop() }
    thread.start()
  }

  deinit {
    process.signal(SIGKILL)
    close(toBrowser)
    try? FileManager.default.removeItem(at: profile)
  }

  public func stop() async {
    await process.terminate()
  }

  /// Sends one command and waits for its answer (`result`), or throws its `error`.
  @discardableResult
  public func send(
    _ method: String, _ params: [String: Any] = [:], session: String? = nil
  ) async throws
    -> [String: Any]
  {
    try await withCheckedThrowingContinuation { continuation in
      let id = lock.withLock { () -> Int in
        nextID += 1
        waiting[nextID] = continuation
        return nextID
      }
      var message: [String: Any] = ["id": id, "method": method, "params": params]
      if let session { message["sessionId"] = session }
      var data = try! JSONSerialization.data(withJSONObject: message)
      data.append(0)
      let written = data.withUnsafeBytes { write(toBrowser, $0.baseAddress, $0.count) }
      if written != data.count {
        let continuation = lock.withLock { waiting.removeValue(forKey: id) }
        continuation?.resume(throwing: TestServiceError("cannot write to chromium"))
      }
    }
  }

  private func readLoop() {
    var buffer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
      let count = read(fromBrowser, &chunk, chunk.count)
      if count <= 0 { break }
      buffer += chunk[0..<count]
      while let end = buffer.firstIndex(of: 0) {
        let message = Array(buffer[..<end])
        buffer.removeSubrange(...end)
        handle(message)
      }
    }
    close(fromBrowser)
    let pending = lock.withLock { () -> [CheckedContinuation<[String: Any], any Error>] in
      defer { waiting = [:] }
      return Array(waiting.values)
    }
    for continuation in pending { continuation.resume(throwing: TestServiceError("chromium exited")) }
  }

  private func handle(_ bytes: [UInt8]) {
    guard let message = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
      return
    }
    if let id = message["id"] as? Int {
      let continuation = lock.withLock { waiting.removeValue(forKey: id) }
      if let error = message["error"] as? [String: Any] {
        continuation?.resume(throwing: TestServiceError("DevTools: \(error["message"] ?? error)"))
      } else {
        continuation?.resume(returning: message["result"] as? [String: Any] ?? [:])
      }
      return
    }
    let params = message["params"] as? [String: Any] ?? [:]
    switch message["method"] as? String {
    case "Runtime.consoleAPICalled" where params["type"] as? String == "error":
      let text = (params["args"] as? [[String: Any]] ?? []).map {
        "\($0["value"] ?? $0["description"] ?? "")"
      }
      lock.withLock { errors.append("console.error: " + text.joined(separator: " ")) }
    case "Runtime.exceptionThrown":
      let details = params["exceptionDetails"] as? [String: Any] ?? [:]
      let description =
        (details["exception"] as? [String: Any])?["description"] ?? details["text"] ?? "exception"
      lock.withLock { errors.append("uncaught: \(description)") }
    default:
      break
    }
  }

  /// A new tab, attached, with Page and Runtime events on.
  public func newPage() async throws -> Page {
    let target = try await send("Target.createTarget", ["url": "about:blank"])
    guard let targetID = target["targetId"] as? String else { throw TestServiceError("no target") }
    let attached = try await send("Target.attachToTarget", ["targetId": targetID, "flatten": true])
    guard let session = attached["sessionId"] as? String else { throw TestServiceError("no session") }
    try await send("Page.enable", session: session)
    try await send("Runtime.enable", session: session)
    return Page(browser: self, session: session)
  }

  public struct Page: Sendable {
    let browser: Chromium
    let session: String

    public func navigate(_ url: String) async throws {
      try await browser.send("Page.navigate", ["url": url], session: session)
    }

    /// Runs `script` in the page (promises awaited) and returns its value.
    @discardableResult
    public func evaluate(_ script: String) async throws -> Any? {
      let result = try await browser.send(
        "Runtime.evaluate", ["expression": script, "returnByValue": true, "awaitPromise": true],
        session: session)
      if let exception = result["exceptionDetails"] as? [String: Any] {
        throw TestServiceError("script failed: \(exception["text"] ?? exception)")
      }
      return (result["result"] as? [String: Any])?["value"]
    }

    /// Polls `condition` (a JavaScript expression) until it is true; throws after `timeout`.
    public func waitFor(_ condition: String, timeout: Duration = .seconds(20)) async throws {
      let deadline = ContinuousClock.now + timeout
      while ContinuousClock.now < deadline {
        if (try? await evaluate("Boolean(\(condition))")) as? Bool == true { return }
        try await Task.sleep(for: .milliseconds(100))
      }
      let text = (try? await evaluate("document.body ? document.body.innerText.slice(0, 300) : ''")) ?? ""
      throw TestServiceError("timed out waiting for \(condition); the page shows: \(text ?? "")")
    }

    public func screenshot(to url: URL) async throws {
      let result = try await browser.send("Page.captureScreenshot", ["format": "png"], session: session)
      guard let base64 = result["data"] as? String, let data = Data(base64Encoded: base64) else {
        throw TestServiceError("no screenshot data")
      }
      try FileManager.default.createDirectory(
        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
      try data.write(to: url)
    }
  }
}
