import ArgumentParser
import Foundation
import FoyerCore
import FoyerGateway
import Logging
import NIOCore
import NIOPosix
import RedisNIO
import ServiceLifecycle
import UnixSignals
import WaitingRoom

@main
struct Foyer: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "foyer",
    abstract: "Foyer, a virtual waiting room gateway.",
    subcommands: [Gateway.self, Ctl.self]
  )
}

/// `foyer gateway`: the public listener and the admission loop, until SIGTERM/SIGINT.
///
/// Configuration so far comes from flags and the environment; the YAML file of the gateway
/// issue comes with the proxy. Secrets come only from the environment: `FOYER_KEYS` (or
/// `FOYER_KEYS_FILE`) and `FOYER_ADMIN_TOKEN`.
struct Gateway: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Run the gateway and the admission loop.")

  @Option(help: "Public listen address.") var host = "0.0.0.0"
  @Option(help: "Public port.") var port = 8080
  @Option(help: "Redis URL (redis://[:password@]host:port[/db] or unix:///path).") var redis =
    "redis://127.0.0.1:6379"
  @Option(
    name: .customLong("room"),
    help:
      "A protected room as id:path-prefix (repeatable), e.g. onsale:/events/1. Created with default settings if missing."
  )
  var rooms: [String] = []
  @Flag(help: "Set Secure on cookies (behind TLS).") var secureCookies = false
  @Option(help: "Upstream to forward admitted traffic to, http://host[:port]. Without it: 502 no_upstream.")
  var upstream: String?
  @Option(help: "Event-loop threads (default: one per core).") var threads = System.coreCount
  @Option(help: "Admin API listen address (loopback by default).") var adminHost = "127.0.0.1"
  @Option(help: "Admin API port. The API runs only when FOYER_ADMIN_TOKEN is set.") var adminPort = 8081

  func run() async throws {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    let logger = Logger(label: "foyer")
    let environment = ProcessInfo.processInfo.environment
    let keyRing: KeyRing
    do {
      keyRing = try KeyRing.load(environment: environment) { path in
        try String(contentsOfFile: path, encoding: .utf8)
      }
    } catch {
      throw ValidationError(error.description)
    }
    var upstreamConfiguration: UpstreamConfiguration?
    if let upstream {
      do { upstreamConfiguration = try UpstreamConfiguration(url: upstream) } catch {
        throw ValidationError(error.description)
      }
    }
    var routes: [RoomRoute] = []
    for spec in rooms {
      guard let colon = spec.firstIndex(of: ":"), Identifier.isValid(spec[..<colon]),
        spec[spec.index(after: colon)...].hasPrefix("/")
      else {
        throw ValidationError("--room must be id:/path-prefix with id in [A-Za-z0-9_-]{1,64} (got '\(spec)')")
      }
      routes.append(
        RoomRoute(id: String(spec[..<colon]), pathPrefix: String(spec[spec.index(after: colon)...])))
    }

    guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let client: RedisClient
    do {
      client = RedisClient(configuration: try RedisConfiguration(url: redis), eventLoopGroup: group)
    } catch {
      throw ValidationError("\(error)")
    }
    let store = RoomStore(redis: client)
    for route in routes {
      do { try await store.ensureRoom(route.id, settings: RoomSettings()) } catch {
        logger.warning(
          "cannot create room yet (Redis unreachable?)",
          metadata: ["room": "\(route.id)", "error": "\(error)"])
      }
    }
    let server = GatewayServer(
      configuration: GatewayConfiguration(
        host: host, port: port, keyRing: keyRing, secureCookies: secureCookies, rooms: routes,
        upstream: upstreamConfiguration),
      store: store, eventLoopGroup: group, logger: logger)
    var services: [any Service] = [server, AdmissionLoop(store: store, logger: logger)]
    if let token = environment["FOYER_ADMIN_TOKEN"], !token.isEmpty {
      guard token.utf8.count >= 16 else {
        throw ValidationError("FOYER_ADMIN_TOKEN must be at least 16 characters")
      }
      services.append(
        AdminServer(
          configuration: AdminConfiguration(host: adminHost, port: adminPort, token: token), store: store,
          eventLoopGroup: group, logger: logger))
    } else {
      logger.warning("FOYER_ADMIN_TOKEN is not set: the admin API is off")
    }
    let serviceGroup = ServiceGroup(
      configuration: .init(
        services: services,
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await serviceGroup.run()
    await client.close()
  }
}
