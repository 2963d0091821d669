internal import NIOCore

/// Where the NIOHTTP1 path writes a forwarded answer: at the socket end of the pipeline,
/// below the HTTP encoder, so the answer goes out as `ResponseHead` rewrote it and as the
/// upstream framed it. It passes everything else through.
final class RawResponseWriter: ChannelOutboundHandler {
  typealias OutboundIn = IOData
  typealias OutboundOut = IOData

  private(set) var context: ChannelHandlerContext?

  func handlerAdded(context: ChannelHandlerContext) { self.context = context }
  func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

  /// Flushes, with a future for when the answer's last bytes are on the wire.
  func flushed() -> EventLoopFuture<Void>? {
    context?.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer())))
  }
}

/// Sent outbound by `GatewayHandler` once a forwarded answer (written below the codec) has
/// ended: `RequestSequencer` and `ConnectionGuard` take it as they take a response's end.
struct ForwardedResponseEnded {
  /// Done when the answer is on the wire.
  var written: EventLoopFuture<Void>
  /// The connection closes after it.
  var close: Bool
}
