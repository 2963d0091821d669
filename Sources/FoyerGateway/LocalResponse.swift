internal import NIOCore
internal import NIOHTTP1

/// A complete answer the gateway makes itself (status, waiting page, admin API): length,
/// `no-store`, no body for `HEAD`, and the connection closed after it when the request asked.
/// One writer for the public and the admin listener.
enum LocalResponse {
  static func write(
    _ context: ChannelHandlerContext, to request: HTTPRequestHead, status: HTTPResponseStatus,
    contentType: String, body: ByteBuffer, extraHeaders: HTTPHeaders = [:]
  ) {
    var headers = extraHeaders
    headers.add(name: "content-type", value: contentType)
    headers.add(name: "content-length", value: String(body.readableBytes))
    headers.add(name: "cache-control", value: "no-store")
    let keepAlive = request.isKeepAlive
    if !keepAlive { headers.add(name: "connection", value: "close") }
    let head = HTTPResponseHead(version: request.version, status: status, headers: headers)
    context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
    if request.method != .HEAD {
      context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil)
    }
    let done = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
    if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
  }
}
