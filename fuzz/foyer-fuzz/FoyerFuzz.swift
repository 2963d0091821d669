// The fuzz targets for the edge's byte readers (`HTTPWire`), and their invariants.
//
// Built with `-DFUZZING -sanitize=fuzzer,address` (scripts/fuzz.sh) this is a libFuzzer
// binary; `FOYER_FUZZ_TARGET` (head, chunk or path) chooses what it feeds. Built normally it
// replays corpus files — `foyer-fuzz TARGET FILE…` — through the same checks, which is how
// `make test` keeps every finding as a regression (FuzzCorpusTests).
internal import HTTPWire

#if canImport(Glibc)
import Glibc
#endif

enum Target: String, CaseIterable {
  case head, chunk, path

  func check(_ bytes: UnsafeRawBufferPointer) {
    switch self {
    case .head: checkHead(bytes)
    case .chunk: checkChunk(bytes)
    case .path: checkPath(bytes)
    }
  }
}

/// To standard error, by descriptor (the C `stderr` global is not concurrency-safe).
func say(_ text: String) {
  let line = text + "\n"
  _ = line.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
}

func require(_ condition: Bool, _ what: @autoclosure () -> String) {
  if !condition {
    say("invariant broken: \(what())")
    abort()
  }
}

/// A head read is within the bytes, ends at the first blank line, and reads the same from
/// its own bytes alone; no field range leaves its line.
func checkHead(_ bytes: UnsafeRawBufferPointer) {
  for (result, response) in [(RawHTTP.request(bytes), false), (RawHTTP.response(bytes), true)] {
    guard case .head(let head) = result else { continue }
    require(head.length >= 4 && head.length <= bytes.count, "head length \(head.length) of \(bytes.count)")
    require(
      bytes[head.length - 4] == 13 && bytes[head.length - 3] == 10 && bytes[head.length - 2] == 13
        && bytes[head.length - 1] == 10, "the head does not end with a blank line")
    var previous = head.start.2.upperBound
    for field in head.fields {
      require(field.line.lowerBound >= previous && field.line.upperBound <= head.length, "field line out of order")
      require(field.name.lowerBound == field.line.lowerBound, "field name not at line start")
      require(field.value.lowerBound >= field.name.upperBound && field.value.upperBound <= field.line.upperBound - 2, "field value outside its line")
      for index in field.value { require(bytes[index] != 13 && bytes[index] != 10, "CR or LF in a field value") }
      previous = field.line.upperBound
    }
    let again = UnsafeRawBufferPointer(rebasing: bytes[0..<head.length])
    let reread = response ? RawHTTP.response(again) : RawHTTP.request(again)
    if case .head(let same) = reread {
      require(same.length == head.length && same.fields.count == head.fields.count, "reading the head alone differs")
    }
  }
}

/// The chunked scanner gives the same end whether the body comes at once or a byte at a time.
func checkChunk(_ bytes: UnsafeRawBufferPointer) {
  var whole = ChunkedBodyScanner()
  let once = whole.scan(bytes)
  var split = ChunkedBodyScanner()
  var outcome = ChunkedBodyScanner.Outcome.needMore
  for index in 0..<bytes.count {
    outcome = split.scan(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + 1)]))
    if case .ended(let consumed) = outcome {
      outcome = .ended(consumed: index + consumed)
      break
    }
    if case .invalid = outcome { break }
  }
  require(once == outcome, "whole \(once) vs byte by byte \(outcome)")
  if case .ended(let consumed) = once { require(consumed <= bytes.count && consumed >= 5, "consumed \(consumed)") }
}

/// Canonical targets are a fixed point, start with one `/` and hold no dot or empty segment;
/// the express lane's quick test never passes what canonicalisation would change.
func checkPath(_ bytes: UnsafeRawBufferPointer) {
  let outcome = CanonicalTarget.canonicalize(bytes)
  if CanonicalTarget.isPlainlyCanonical(bytes[...]) {
    require(outcome == .canonical, "plainly canonical but \(outcome)")
  }
  guard case .rewritten(let target, _) = outcome else { return }
  require(CanonicalTarget.canonicalize(target) == .canonical, "\(target) is not a fixed point")
  let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
  require(path.hasPrefix("/") && !path.contains("//"), "\(target) has empty segments")
  for segment in path.split(separator: "/") { require(segment != "." && segment != "..", "\(target) has dot segments") }
}

#if FUZZING
internal import CFuzzerDriver

nonisolated(unsafe) private var chosen: Target?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  if chosen == nil {
    let name = getenv("FOYER_FUZZ_TARGET").map { String(cString: $0) } ?? "head"
    chosen = Target(rawValue: name) ?? .head
  }
  chosen!.check(UnsafeRawBufferPointer(start: data, count: size))
  return 0
}

// SwiftPM links an executable's entry as `foyer_fuzz_main`; it starts libFuzzer's driver.
@main struct Fuzz {
  static func main() {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzOne($0, $1) })
  }
}
#else
@main struct Replay {
  static func main() {
    let arguments = CommandLine.arguments.dropFirst()
    guard let name = arguments.first, let target = Target(rawValue: name) else {
      say("usage: foyer-fuzz head|chunk|path FILE…")
      exit(2)
    }
    var count = 0
    for path in arguments.dropFirst() {
      guard let file = fopen(path, "rb") else {
        say("cannot open \(path)")
        exit(2)
      }
      var bytes: [UInt8] = []
      var buffer = [UInt8](repeating: 0, count: 65_536)
      while true {
        let read = fread(&buffer, 1, buffer.count, file)
        if read <= 0 { break }
        bytes += buffer[0..<read]
      }
      fclose(file)
      bytes.withUnsafeBytes { target.check($0) }
      count += 1
    }
    print("\(target.rawValue): \(count) inputs hold")
  }
}
#endif
