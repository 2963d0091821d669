import Foundation
import Testing

/// Every input the fuzzers kept (`fuzz/corpus/…`, findings included as `finding-*`) still
/// holds the readers' invariants: replayed through `foyer-fuzz`, the fuzz targets' own checks,
/// built as a plain binary next to the test runner.
@Suite struct FuzzCorpusTests {
  static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../fuzz/corpus").standardizedFileURL

  @Test(arguments: ["head", "chunk", "path"]) func theCorpusHolds(target: String) throws {
    let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var directory = runner.deletingLastPathComponent()
    while directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent() }
    let executable = directory.appendingPathComponent("foyer-fuzz")
    let inputs = try FileManager.default.contentsOfDirectory(
      at: Self.corpus.appendingPathComponent(target), includingPropertiesForKeys: nil)
    #expect(inputs.count >= 5, "the \(target) corpus is missing")
    let process = Process()
    process.executableURL = executable
    process.arguments = [target] + inputs.map(\.path)
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "\(text.prefix(2_000))")
    #expect(text.contains("\(target): \(inputs.count) inputs hold"))
  }
}
