internal import FoyerCore
internal import HTTPWire
internal import Logging
internal import NIOCore
internal import NIOHTTP1
internal import Prometheus
internal import WaitingRoom

/// The client side of a forwarded exchange: told how it ended. The answer's bytes go to the
/// `output` context the exchange was given (below any HTTP encoder), never through NIOHTTP1.
protocol ForwardingClient: AnyObject {
  /// The answer is out, or its last bytes are written; `closeClient` when the client
  /// connection must close after them (a close-delimited answer, or the client asked).
  func exchangeEnded(_ exchange: ForwardingExchange, closeClient: Bool)
  /// Failed before any answer went out: the client answers this JSON itself.
  func exchangeFailed(_ exchange: ForwardingExchange, status: HTTPResponseStatus, body: String)
  /// Cut off mid-answer: only a close can tell the client.
  func exchangeAborted(_ exchange: ForwardingExchange)
  /// The upstream can take more of the request body.
  func exchangeCanTakeBody(_ exchange: ForwardingExchange)
}

/// One request forwarded to the upstream and its answer relayed back: the one forwarding
/// engine, whichever parser read the request. It sends the head `UpstreamRequestHead` wrote
/// and frames the body itself (the received length, or chunks it encodes); it reads the
/// answer as bytes, rewrites only its head (`ResponseHead`) and follows its framing with
/// the chunk scanner; it owns the answer deadline, the single retry of an idempotent
/// request on a stale kept-alive connection, and gives the upstream connection back only
/// when both directions ended cleanly.
///
/// A class: the relay updates it on every upstream read.
final class ForwardingExchange {
  struct Request {
    /// The head as sent upstream (kept for the retry).
    var head: ByteBuffer
    var requestIDRange: Range<Int>
    var isHead: Bool
    var holder: (room: String, visitor: VisitorID, expiry: Int64)?
    var framing: RequestFraming
    /// The client keeps the connection after this answer.
    var clientKeepAlive: Bool
    /// Safe to send twice (RFC 9110 §9.2.2): without a body, sent again once on a stale
    /// kept-alive connection (`ExchangeStateMachine`).
    var idempotent: Bool
  }

  /// What the relay still expects of the upstream's answer.
  enum ResponseBody {
    case head
    case fixed(remaining: Int)
    case chunked(ChunkedBodyScanner)
    case untilClose
    case done

    var isUntilClose: Bool {
      if case .untilClose = self { true } else { false }
    }
  }

  let request: Request
  let started: NIODeadline
  private let shared: GatewayContext
  private let pool: UpstreamPool
  private let client: any ForwardingClient
  /// Where the answer's bytes are written.
  private let output: ChannelHandlerContext
  /// The connection's answer timer (one per client connection, see `DeadlineTimer`).
  private let timer: DeadlineTimer
  private(set) var upstream: UpstreamConnection?
  private var machine: ExchangeStateMachine
  private var body = ResponseBody.head
  /// Request bytes framed while the upstream connection was not there yet.
  private var unsent: ByteBuffer?
  /// Upstream bytes not relayed yet (a head still arriving).
  private var pending: ByteBuffer?
  /// When the request last moved: the 504 clock counts from here, so a long upload is not
  /// cut off while it progresses.
  private var lastProgress: NIODeadline
  private var over = false
  /// The client connection closes after this answer (shutdown asked for it).
  var closeClientAfter = false
  /// The client connection closes after this answer, whatever the upstream says.
  private var closesClient: Bool { closeClientAfter || !request.clientKeepAlive }

  /// An upstream head longer than this is refused (502).
  static let responseHeadLimit = 64 * 1024

  init(
    _ request: Request, shared: GatewayContext, pool: UpstreamPool, client: any ForwardingClient,
    output: ChannelHandlerContext, timer: DeadlineTimer
  ) {
    self.request = request
    self.shared = shared
    self.pool = pool
    self.client = client
    self.output = output
    self.timer = timer
    started = .now()
    lastProgress = started
    machine = ExchangeStateMachine(idempotent: request.idempotent, hasBody: request.framing != .none)
  }

  var requestID: String {
    String(decoding: request.head.readableBytesView[request.requestIDRange], as: UTF8.self)
  }

  /// The request line's target, for logs.
  var target: String {
    let line = request.head.readableBytesView.prefix(while: { $0 != RawHTTP.cr })
    let parts = line.split(separator: RawHTTP.space)
    return parts.count == 3 ? String(decoding: parts[1], as: UTF8.self) : "?"
  }

  /// The client has the answer's head.
  var responseStarted: Bool { machine.responseStarted }

  /// Whether body bytes sent now go out rather than pile up here.
  var canTakeBody: Bool { upstream?.channel.isWritable ?? false }

  // MARK: Sending

  func start() {
    armTimeout()
    if let upstream = pool.takeIdle() {
      attach(upstream)
    } else {
      connect()
    }
  }

  /// A part of the request body, framed as `request.framing` says.
  func sendBody(_ part: ByteBuffer) {
    guard !over, part.readableBytes > 0 else { return }
    lastProgress = .now()
    machine.sentBody()
    if case .chunked = request.framing {
      var size = output.channel.allocator.buffer(capacity: 18)
      size.writeString(String(part.readableBytes, radix: 16))
      size.writeStaticString("\r\n")
      send(size)
      send(part)
      send(ByteBuffer(string: "\r\n"))
    } else {
      send(part)
    }
  }

  /// The request's end, with its trailers (already filtered) for a chunked body.
  func sendEnd(trailers: HTTPHeaders?) {
    guard !over else { return }
    machine.sentEnd()
    lastProgress = .now()
    if case .chunked = request.framing {
      var end = output.channel.allocator.buffer(capacity: 64)
      end.writeStaticString("0\r\n")
      for (name, value) in trailers ?? [:] {
        end.writeString(name)
        end.writeStaticString(": ")
        end.writeString(value)
        end.writeStaticString("\r\n")
      }
      end.writeStaticString("\r\n")
      send(end)
    }
    flushUpstream()
  }

  /// One flush per client read burst.
  func flushUpstream() {
    upstream?.channel.flush()
  }

  private func send(_ bytes: ByteBuffer) {
    if let upstream {
      upstream.channel.write(NIOAny(IOData.byteBuffer(bytes)), promise: nil)
    } else if unsent == nil {
      unsent = bytes
    } else {
      unsent!.writeImmutableBuffer(bytes)
    }
  }

  private func connect() {
    // The retry after a stale kept-alive connection asks for a new one.
    pool.acquire(fresh: machine.retried).assumeIsolated().whenComplete { result in
      // Still this exchange's to use: the client may have gone, or a timeout answered it.
      guard !self.over, self.upstream == nil else {
        if case .success(let upstream) = result { self.pool.release(upstream) }
        return
      }
      switch result {
      case .success(let upstream):
        self.attach(upstream)
      case .failure(UpstreamPoolError.busy):
        self.shared.metrics.upstreamBusy.increment()
        self.fail(.serviceUnavailable, "the upstream is at its connection limit", code: "upstream_busy")
      case .failure(let error):
        self.shared.metrics.upstreamConnectErrors.increment()
        self.shared.logger.warning(
          "upstream connect failed", metadata: ["request_id": "\(self.requestID)", "error": "\(error)"])
        self.fail(.badGateway, "the upstream is unreachable")
      }
    }
  }

  private func attach(_ upstream: UpstreamConnection) {
    self.upstream = upstream
    upstream.relay.exchange = self
    upstream.relay.paused = !output.channel.isWritable
    if let unsent = unsent.take() {
      upstream.channel.write(NIOAny(IOData.byteBuffer(request.head)), promise: nil)
      upstream.channel.writeAndFlush(NIOAny(IOData.byteBuffer(unsent)), promise: nil)
    } else {
      upstream.relay.send(request.head)
    }
    if upstream.channel.isWritable { client.exchangeCanTakeBody(self) }
  }

  private func armTimeout() {
    timer.ensure(by: lastProgress + pool.configuration.responseTimeout, on: output.eventLoop) {
      self.checkTimeout()
    }
  }

  /// Failed with 504 once the deadline has passed without an answer.
  private func checkTimeout() {
    guard !over, !responseStarted else { return }
    if NIODeadline.now() - lastProgress < pool.configuration.responseTimeout {
      armTimeout()
    } else {
      shared.metrics.upstreamTimeouts.increment()
      fail(.gatewayTimeout, "the upstream did not answer in time")
    }
  }

  // MARK: Relaying the answer (called by `UpstreamRelay`)

  func relayRead(_ bytes: ByteBuffer) {
    if pending == nil {
      pending = bytes
    } else {
      pending!.writeImmutableBuffer(bytes)
    }
    relay()
  }

  /// Passes on what can be passed on of `pending`, and ends the exchange when the answer is
  /// complete.
  private func relay() {
    guard !over, var pending = pending.take() else { return }
    relaying: while pending.readableBytes > 0 {
      switch body {
      case .head:
        switch head(&pending) {
        case .wait:
          break relaying
        case .invalid:
          return fail(.badGateway, "the upstream's answer is not valid HTTP/1.1")
        case .skipped, .written:
          continue
        }
      case .fixed(let remaining):
        let take = min(remaining, pending.readableBytes)
        write(pending.readSlice(length: take)!)
        body = remaining == take ? .done : .fixed(remaining: remaining - take)
      case .chunked(var scanner):
        switch pending.withUnsafeReadableBytes({ scanner.scan($0) }) {
        case .needMore:
          write(pending.readSlice(length: pending.readableBytes)!)
          body = .chunked(scanner)
        case .ended(let consumed):
          write(pending.readSlice(length: consumed)!)
          body = .done
        case .invalid:
          return abort()
        }
      case .untilClose:
        write(pending.readSlice(length: pending.readableBytes)!)
      case .done:
        machine.bytesAfterAnswer()
        pending.moveReaderIndex(to: pending.writerIndex)
      }
    }
    self.pending = pending.readableBytes > 0 ? pending : nil
    // The answer is whole; if the request is not, the rest of its body is not sent.
    if case .done = body { finish(closeClient: false) }
  }

  private func head(_ pending: inout ByteBuffer) -> ResponseHead.Outcome {
    let closeClient = closesClient
    let rewritten = pending.withUnsafeReadableBytes { bytes in
      ResponseHead.rewrite(
        bytes, isHead: request.isHead, closeClient: closeClient,
        clearPassOf: request.holder?.room, secureCookies: shared.configuration.secureCookies,
        allocator: output.channel.allocator)
    }
    switch rewritten {
    case .wait:
      return pending.readableBytes > Self.responseHeadLimit ? .invalid : .wait
    case .invalid:
      return .invalid
    case .informational(let length):
      // 1xx: not passed on (the gateway answered any `Expect` itself); 101 was never asked.
      pending.moveReaderIndex(forwardBy: length)
      return .skipped
    case .head(let head):
      pending.moveReaderIndex(forwardBy: head.consumed)
      body = head.body
      machine.answerStarted(upstreamKeepAlive: head.upstreamKeepAlive, untilClose: head.body.isUntilClose)
      shared.metrics.countProxied(status: head.status)
      if head.released, let holder = request.holder {
        // Checkout done: free the slot at once (the head clears the pass).
        let logger = shared.logger
        let requestID = self.requestID
        shared.release(
          room: holder.room, visitor: holder.visitor, passExpiry: holder.expiry, reason: .done,
          on: output.eventLoop
        )
        .whenFailure { error in
          logger.warning(
            "release failed",
            metadata: ["request_id": "\(requestID)", "room": "\(holder.room)", "error": "\(error)"])
        }
      }
      write(head.bytes)
      return .written
    }
  }

  private func write(_ bytes: ByteBuffer) {
    output.write(NIOAny(IOData.byteBuffer(bytes)), promise: nil)
    if !output.channel.isWritable {
      // Pause first: the flush may drain the socket and turn the channel writable at once,
      // and that event is what resumes reading.
      upstream?.relay.paused = true
      output.flush()
    }
  }

  /// The upstream's read burst is over: one flush to the client for all of it.
  func relayReadComplete() {
    output.flush()
  }

  func relayWritabilityChanged(writable: Bool) {
    if writable { client.exchangeCanTakeBody(self) }
  }

  func relayClosed() {
    guard !over else { return }
    upstream?.relay.exchange = nil
    switch machine.upstreamClosed(reused: upstream?.reused == true) {
    case .answerEnded:
      finish(closeClient: true)
    case .retry:
      upstream = nil
      pending = nil
      connect()
    case .badGateway:
      shared.metrics.upstreamResets.increment()
      fail(.badGateway, "the upstream closed the connection")
    case .abort:
      shared.metrics.upstreamResets.increment()
      abort()
    }
  }

  /// The client writes again: the upstream may read again.
  func clientWritabilityChanged(writable: Bool) {
    upstream?.relay.paused = !writable
  }

  /// The client left: the upstream connection's state is unknown; it goes.
  func clientClosed() {
    guard !over else { return }
    over = true
    dropUpstream()
  }

  // MARK: Ending

  /// The answer is complete: the upstream goes back to the pool when both directions ended.
  private func finish(closeClient: Bool) {
    guard !over else { return }
    over = true
    if responseStarted { shared.metrics.recordProxied(since: started) }
    if let upstream {
      upstream.relay.exchange = nil
      upstream.relay.paused = false
      if machine.reusable(leftover: pending != nil) {
        pool.release(upstream)
      } else {
        upstream.channel.close(promise: nil)
      }
    }
    client.exchangeEnded(
      self, closeClient: closeClient || closesClient)
  }

  /// Failed before any answer went out: the client answers with a small JSON.
  private func fail(_ status: HTTPResponseStatus, _ message: String, code: String? = nil) {
    guard !over else { return }
    if responseStarted { return abort() }
    over = true
    dropUpstream()
    let body = shared.failedExchange(
      status, message, code: code, requestID: requestID, uri: target[...], room: request.holder?.room,
      started: started)
    client.exchangeFailed(self, status: status, body: body)
  }

  /// Cut off mid-answer.
  private func abort() {
    guard !over else { return }
    over = true
    dropUpstream()
    client.exchangeAborted(self)
  }

  private func dropUpstream() {
    if let upstream {
      upstream.relay.exchange = nil
      upstream.channel.close(promise: nil)
    }
    upstream = nil
    unsent = nil
  }
}
