// swift-tools-version:6.1
import PackageDescription

/// Every Swift target opts into the same strictness (DESIGN §8).
let swiftSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
  .enableUpcomingFeature("InternalImportsByDefault"),
]

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")

let package = Package(
  name: "foyer",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "RedisNIO", targets: ["RedisNIO"]),
    .library(name: "FoyerCore", targets: ["FoyerCore"]),
    .library(name: "WaitingRoom", targets: ["WaitingRoom"]),
    .library(name: "FoyerGateway", targets: ["FoyerGateway"]),
    .library(name: "BoxOffice", targets: ["BoxOffice"]),
    .executable(name: "foyer", targets: ["foyer"]),
    .executable(name: "foyer-bench", targets: ["foyer-bench"]),
    .executable(name: "boxoffice", targets: ["boxoffice"]),
    .executable(name: "foyer-load", targets: ["foyer-load"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
    .package(url: "https://github.com/ordo-one/malloc-interposer.git", from: "1.6.0"),
    .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
    .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.24.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
    .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.5.0"),
    .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.25.0"),
    .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    .package(url: "https://github.com/apple/swift-crypto.git", "3.12.0"..<"5.0.0"),
  ],
  targets: [
    // C libraries from Debian packages; see README "Requirements".
    .systemLibrary(
      name: "CHiredis",
      pkgConfig: "hiredis",
      providers: [.apt(["libhiredis-dev"]), .brew(["hiredis"])]
    ),
    .systemLibrary(
      name: "CQRencode",
      pkgConfig: "libqrencode",
      providers: [.apt(["libqrencode-dev"]), .brew(["qrencode"])]
    ),
    .systemLibrary(
      name: "CLibCrypto",
      pkgConfig: "libcrypto",
      providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]
    ),

    .target(
      name: "RedisNIO",
      dependencies: ["CHiredis", "CLibCrypto", nioCore, nioPosix, logging],
      swiftSettings: swiftSettings
    ),
    // Strict YAML configuration reading, shared by `foyer` and `boxoffice`.
    .target(
      name: "FoyerConfig",
      dependencies: [nioCore, .product(name: "Yams", package: "Yams")],
      swiftSettings: swiftSettings
    ),
    // Log formats (text, or one JSON object per line), shared by `foyer` and `boxoffice`.
    .target(
      name: "FoyerLogging",
      dependencies: ["FoyerConfig", logging],
      swiftSettings: swiftSettings
    ),
    .target(
      name: "FoyerCore",
      dependencies: ["CLibCrypto"],
      swiftSettings: swiftSettings
    ),
    .target(
      name: "WaitingRoom",
      dependencies: [
        "RedisNIO", "FoyerCore", nioCore, logging,
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: swiftSettings
    ),
    // The byte-level HTTP readers (head, chunked body, target), alone so they can be fuzzed.
    .target(name: "HTTPWire", swiftSettings: swiftSettings),
    .target(name: "CFuzzerDriver", path: "fuzz/CFuzzerDriver"),
    .executableTarget(
      name: "foyer-fuzz", dependencies: ["HTTPWire", "CFuzzerDriver"], path: "fuzz/foyer-fuzz",
      swiftSettings: swiftSettings),
    .target(
      name: "FoyerGateway",
      dependencies: [
        "HTTPWire", "WaitingRoom", "RedisNIO", "FoyerCore", nioCore, nioPosix, logging,
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOExtras", package: "swift-nio-extras"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        "FoyerConfig", "FoyerLogging",
      ],
      // The OpenAPI documents, compiled in: a copied binary serves them without a bundle.
      resources: [.embedInCode("OpenAPI/admin.openapi.json"), .embedInCode("OpenAPI/public.openapi.json")],
      swiftSettings: swiftSettings
    ),

    .target(
      name: "BoxOffice",
      dependencies: [
        "FoyerCore", "RedisNIO", "CQRencode", nioCore, logging,
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "PostgresNIO", package: "postgres-nio"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        "FoyerConfig", "FoyerLogging",
      ],
      resources: [.embedInCode("OpenAPI/boxoffice.openapi.json")],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "boxoffice",
      dependencies: [
        "BoxOffice", "FoyerCore", "FoyerConfig", "FoyerLogging", "RedisNIO", nioCore, nioPosix, logging,
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "foyer",
      dependencies: [
        "FoyerGateway", "FoyerLogging", "WaitingRoom", "RedisNIO", "FoyerCore", nioCore, nioPosix, logging,
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "foyer-bench",
      dependencies: [
        "RedisNIO", "FoyerCore", "WaitingRoom", nioCore, nioPosix,
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
      ],
      path: "loadtest/foyer-bench",
      swiftSettings: swiftSettings
    ),

    // The on-sale simulator (#6): a crowd of virtual visitors through gateway and BoxOffice.
    .target(
      name: "FoyerLoad",
      dependencies: [
        "FoyerCore", "FoyerConfig", "FoyerGateway", "BoxOffice", nioCore, nioPosix, logging,
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
        .product(name: "PostgresNIO", package: "postgres-nio"),
      ],
      path: "loadtest/FoyerLoad",
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "foyer-load",
      dependencies: [
        "FoyerLoad", logging,
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "loadtest/foyer-load",
      swiftSettings: swiftSettings
    ),

    // Shared by every test target: starts throwaway services, finds free ports.
    .target(
      name: "FoyerTestSupport",
      dependencies: [
        "RedisNIO", "BoxOffice", "FoyerGateway", "WaitingRoom", "FoyerCore", nioCore, nioPosix, logging,
        .product(name: "PostgresNIO", package: "postgres-nio"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      path: "Tests/FoyerTestSupport",
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "RedisNIOTests",
      dependencies: ["RedisNIO", "FoyerTestSupport", nioCore, nioPosix],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "WaitingRoomTests",
      dependencies: ["WaitingRoom", "FoyerTestSupport", "RedisNIO", "FoyerCore", nioCore, nioPosix],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "FoyerGatewayTests",
      dependencies: [
        "FoyerGateway", "FoyerLogging", "HTTPWire", "WaitingRoom", "FoyerTestSupport", "RedisNIO", "FoyerCore",
        nioCore, nioPosix, logging,
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Prometheus", package: "swift-prometheus"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "BoxOfficeTests",
      dependencies: [
        "BoxOffice", "FoyerCore", "FoyerLogging", "FoyerTestSupport", "RedisNIO", nioCore, nioPosix, logging,
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "PostgresNIO", package: "postgres-nio"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "JourneyTests",
      dependencies: [
        "BoxOffice", "FoyerGateway", "WaitingRoom", "FoyerCore", "FoyerTestSupport", "RedisNIO", nioCore,
        nioPosix,
        logging, .product(name: "PostgresNIO", package: "postgres-nio"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "LoadTests",
      dependencies: [
        "FoyerLoad", "BoxOffice", "FoyerGateway", "WaitingRoom", "FoyerCore", "FoyerTestSupport", "RedisNIO",
        nioCore, nioPosix, logging,
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "FoyerCoreTests",
      dependencies: [
        "FoyerCore",
        .product(name: "PropertyBased", package: "swift-property-based"),
      ],
      swiftSettings: swiftSettings
    ),
  ]
)
