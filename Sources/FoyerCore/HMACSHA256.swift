internal import CLibCrypto

/// HMAC-SHA256 with one key, through OpenSSL's `EVP_MAC`.
///
/// The keyed context is set up once and re-initialised per message (OpenSSL keeps the key
/// schedule), so a MAC costs no algorithm fetch and no key setup. A context is not
/// thread-safe: keep one per thread or event loop, as `TokenSigner` does.
public final class HMACSHA256 {
  /// Output size in bytes.
  public static let byteCount = 32

  /// The HMAC implementation, fetched once per process. `EVP_MAC` objects are reference
  /// counted and immutable after fetch, so sharing one between threads is safe.
  nonisolated(unsafe) private static let algorithm: OpaquePointer? = EVP_MAC_fetch(nil, "HMAC", nil)

  private let context: OpaquePointer

  /// Creates a context keyed with `key`. Throws if OpenSSL cannot set it up.
  public init(key: some Collection<UInt8>) throws(CryptoError) {
    guard let algorithm = Self.algorithm, let context = EVP_MAC_CTX_new(algorithm) else {
      throw CryptoError("OpenSSL has no HMAC implementation")
    }
    let keyBytes = Array(key)
    let ok = "digest".withCString { name in
      "SHA256".withCString { digest in
        var params = [
          OSSL_PARAM_construct_utf8_string(name, UnsafeMutablePointer(mutating: digest), 0),
          OSSL_PARAM_construct_end(),
        ]
        return keyBytes.withUnsafeBufferPointer { key in
          // An empty key still needs a non-null pointer, or OpenSSL keeps the previous one.
          var zero: UInt8 = 0
          let base = key.baseAddress ?? withUnsafePointer(to: &zero) { $0 }
          return EVP_MAC_init(context, base, key.count, &params) == 1
        }
      }
    }
    guard ok else {
      EVP_MAC_CTX_free(context)
      throw CryptoError("EVP_MAC_init failed")
    }
    self.context = context
  }

  deinit { EVP_MAC_CTX_free(context) }

  /// Writes the MAC of `message` into `output` (at least 32 bytes).
  @discardableResult
  public func authenticate(
    _ message: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
  ) -> Bool {
    precondition(output.count >= Self.byteCount)
    var written = 0
    // A NULL key re-initialises the context with the key it already holds.
    guard EVP_MAC_init(context, nil, 0, nil) == 1,
      EVP_MAC_update(context, message.baseAddress?.assumingMemoryBound(to: UInt8.self), message.count) == 1,
      EVP_MAC_final(context, output.baseAddress?.assumingMemoryBound(to: UInt8.self), &written, output.count)
        == 1
    else { return false }
    return written == Self.byteCount
  }

  /// The MAC of `message`, as bytes.
  public func authenticate(_ message: some Sequence<UInt8>) -> [UInt8] {
    let bytes = Array(message)
    var output = [UInt8](repeating: 0, count: Self.byteCount)
    let ok = bytes.withUnsafeBytes { input in
      output.withUnsafeMutableBytes { authenticate(input, into: $0) }
    }
    precondition(ok, "HMAC-SHA256 failed inside OpenSSL")
    return output
  }
}

/// SHA-256 with one reusable OpenSSL context and the algorithm fetched once (`EVP_Digest`
/// makes and frees a context per call). Not thread-safe: keep one per thread or event loop,
/// as `TokenSigner` does.
public final class SHA256Digest {
  nonisolated(unsafe) private static let algorithm: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)
  private let context: OpaquePointer

  public init() throws(CryptoError) {
    guard Self.algorithm != nil, let context = EVP_MD_CTX_new() else {
      throw CryptoError("OpenSSL has no SHA-256 implementation")
    }
    self.context = context
  }

  deinit { EVP_MD_CTX_free(context) }

  /// Writes the digest of `input` into `output` (at least 32 bytes).
  public func digest(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
    precondition(output.count >= 32)
    var written: UInt32 = 0
    let ok =
      EVP_DigestInit_ex2(context, Self.algorithm, nil) == 1
      && EVP_DigestUpdate(context, input.baseAddress, input.count) == 1
      && EVP_DigestFinal_ex(context, output.baseAddress?.assumingMemoryBound(to: UInt8.self), &written) == 1
    precondition(ok && written == 32, "SHA-256 failed inside OpenSSL")
  }
}

/// Constant-time comparison of two equal-length byte ranges (`CRYPTO_memcmp`).
public func constantTimeEquals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
  guard a.count == b.count else { return false }
  guard a.count > 0 else { return true }
  return CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0
}

/// Constant-time comparison of two byte sequences; lengths are not secret.
public func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
  Array(a).withUnsafeBytes { a in Array(b).withUnsafeBytes { b in constantTimeEquals(a, b) } }
}

/// Fills `buffer` with cryptographically secure random bytes (`RAND_bytes`).
public func secureRandomBytes(_ buffer: UnsafeMutableRawBufferPointer) {
  guard let base = buffer.baseAddress, buffer.count > 0 else { return }
  // RAND_bytes only fails when the OS entropy source is broken; continuing would hand out
  // guessable visitor ids, so stopping is the only safe answer.
  precondition(
    RAND_bytes(base.assumingMemoryBound(to: UInt8.self), Int32(buffer.count)) == 1, "RAND_bytes failed")
}

/// A failure inside OpenSSL, or a key that OpenSSL refused.
public struct CryptoError: Error, CustomStringConvertible, Sendable {
  public let description: String
  init(_ description: String) { self.description = description }
}
