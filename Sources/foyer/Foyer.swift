import ArgumentParser
import Foundation
import FoyerCore
import FoyerGateway
import FoyerLogging
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
    subcommands: [Gateway.self, Ctl.self, EnqueueTokenCommand.self]
  )
}

/// `foyer gateway`: the public listener, the admission loop and the admin API, until
/// SIGTERM/SIGINT, then a drain of in-flight requests.
///
/// Configuration comes from `--config` (see `config/foyer.yaml`, which documents every key
/// and its default); flags override the file. Secrets come only from the environment:
/// `FOYER_KEYS` (or `FOYER_KEYS_FILE`) and `FOYER_ADMIN_TOKEN`.
struct Gateway: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Run the gateway and the admission loop.")

  @Option(help: "YAML configuration file (see config/foyer.yaml).") var config: String?
  @Option(help: "Public listen address (default 0.0.0.0).") var host: String?
  @Option(help: "Public port (default 8080).") var port: Int?
  @Option(help: "Redis URL (redis://[:password@]host:port[/db], unix:///path, or redis-cluster://host:port,host:port… for a Redis Cluster).") var redis: String?
  @Option(help: "Joins and admissions wait for this many replicas to confirm them (redis.wait_replicas; 0 = off).")
  var waitReplicas: Int?
  @Option(
    name: .customLong("room"),
    help:
      "A protected room as id:path-prefix (repeatable; replaces the file's rooms), e.g. onsale:/events/1. Created with default settings if missing."
  )
  var rooms: [String] = []
  @Flag(help: "Set Secure on cookies (behind TLS).") var secureCookies = false
  @Option(help: "Upstream to forward admitted traffic to, http://host[:port]. Without it: 502 no_upstream.")
  var upstream: String?
  @Option(help: "Event-loop threads (default: one per core).") var threads: Int?
  @Option(help: "Admin API listen address (default loopback).") var adminHost: String?
  @Option(help: "Admin API port (default 8081). The API runs only when FOYER_ADMIN_TOKEN is set.")
  var adminPort: Int?
  @Option(
    help: "clients.min_poll_interval_percent: the share of pollAfterMs a visitor must wait between polls (0 = off, as benchmarks that poll flat out need)."
  )
  var minPollIntervalPercent: Int?

  func run() async throws {
    let environment = ProcessInfo.processInfo.environment
    let keyRing: KeyRing
    do {
      keyRing = try KeyRing.load(environment: environment) { path in
        try String(contentsOfFile: path, encoding: .utf8)
      }
    } catch {
      throw ValidationError(error.description)
    }
    let readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) }
    var file: GatewayFile
    do {
      file = try GatewayFile.parse(yaml: try config.map(readFile) ?? "", keyRing: keyRing, readFile: readFile)
    } catch let error as GatewayConfigurationError {
      throw ValidationError("\(config ?? "configuration"): \(error)")
    } catch {
      throw ValidationError("cannot read \(config ?? "configuration"): \(error)")
    }
    // Once the file is read: it says how to log. Mistakes before this are printed by the
    // argument parser.
    file.log.bootstrap()
    let logger = file.log.logger(label: "foyer")
    if let host { file.gateway.host = host }
    if let port { file.gateway.port = port }
    if let redis { file.redisURL = redis }
    if let waitReplicas {
      guard (0...16).contains(waitReplicas) else { throw ValidationError("--wait-replicas must be 0-16") }
      file.replicaWait = waitReplicas == 0 ? nil : ReplicaWait(replicas: waitReplicas, timeout: file.replicaWait?.timeout ?? .milliseconds(100))
    }
    if let threads { file.threads = threads }
    if let adminHost { file.adminHost = adminHost }
    if let adminPort { file.adminPort = adminPort }
    if secureCookies { file.gateway.secureCookies = true }
    if let minPollIntervalPercent {
      guard (0...100).contains(minPollIntervalPercent) else {
        throw ValidationError("--min-poll-interval-percent must be 0 to 100")
      }
      file.gateway.clients.minPollIntervalPercent = minPollIntervalPercent
    }
    if let upstream {
      do { file.gateway.upstream = try UpstreamConfiguration(url: upstream) } catch {
        throw ValidationError(error.description)
      }
    }
    if !rooms.isEmpty {
      file.gateway.rooms = []
      for spec in rooms {
        guard let colon = spec.firstIndex(of: ":"), Identifier.isValid(spec[..<colon]),
          spec[spec.index(after: colon)...].hasPrefix("/")
        else {
          throw ValidationError(
            "--room must be id:/path-prefix with id in [A-Za-z0-9_-]{1,64} (got '\(spec)')")
        }
        file.gateway.rooms.append(
          RoomRoute(id: String(spec[..<colon]), pathPrefix: String(spec[spec.index(after: colon)...])))
      }
    }
    for key in try enqueueKeys(environment) {
      guard file.gateway.rooms.contains(where: { $0.id == key.id }) else {
        throw ValidationError("FOYER_ENQUEUE_KEYS names room '\(key.id)', which this gateway does not protect")
      }
      file.gateway.enqueueKeys[key.id] = key.secret
    }
    let threads = file.threads == 0 ? System.coreCount : file.threads
    guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let client: RedisClient
    do {
      client = RedisClient(configuration: try RedisConfiguration(url: file.redisURL), eventLoopGroup: group)
    } catch {
      throw ValidationError("\(error)")
    }
    let store = RoomStore(redis: client, replicaWait: file.replicaWait, sketching: file.sketching)
    for route in file.gateway.rooms {
      let settings = file.roomSettings[route.id] ?? RoomSettings()
      do { try await store.ensureRoom(route.id, settings: settings) } catch {
        logger.warning(
          "cannot create room yet (Redis unreachable?)",
          metadata: ["room": "\(route.id)", "error": "\(error)"])
      }
    }
    let metrics = GatewayMetrics()
    let server = GatewayServer(
      configuration: file.gateway, store: store, eventLoopGroup: group, metrics: metrics, logger: logger)
    var services: [any Service] = [server, AdmissionLoop(store: store, logger: logger)]
    if let token = environment["FOYER_ADMIN_TOKEN"], !token.isEmpty {
      guard token.utf8.count >= 16 else {
        throw ValidationError("FOYER_ADMIN_TOKEN must be at least 16 characters")
      }
      services.append(
        AdminServer(
          configuration: AdminConfiguration(host: file.adminHost, port: file.adminPort, token: token),
          store: store, eventLoopGroup: group, metrics: metrics, trafficRules: server.trafficRules, logger: logger))
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

/// `foyer enqueue-token`: what an operator's site signs for an invite-only room, for trying a
/// room out and for sites that shell out (the format is in `EnqueueToken`).
struct EnqueueTokenCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "enqueue-token",
    abstract: "Sign an enqueue token for an invite-only room with its key from FOYER_ENQUEUE_KEYS.")

  @Option(help: "The room.") var room: String
  @Option(help: "The site's hash of the account id: 16-128 base64url or hex characters.") var account: String
  @Option(help: "Seconds the token is valid.") var ttl: Int = 3_600

  func run() throws {
    guard let key = try enqueueKeys(ProcessInfo.processInfo.environment).first(where: { $0.id == room }) else {
      throw ValidationError("FOYER_ENQUEUE_KEYS has no key for room '\(room)' (set it to room:base64secret,…)")
    }
    guard EnqueueToken.isValidAccount(account) else {
      throw ValidationError("--account must be 16-128 base64url or hex characters (a hash, never the id itself)")
    }
    guard (1...31_536_000).contains(ttl) else { throw ValidationError("--ttl must be 1-31536000 seconds") }
    let expiry = Int64(Date().timeIntervalSince1970) + Int64(ttl)
    print(try EnqueueToken(room: room, account: account, expiry: expiry).signed(key: key.secret))
  }
}

/// The invite-only rooms' keys from `FOYER_ENQUEUE_KEYS` (`room:base64secret,…`, read by the
/// key ring's parser with room ids as key ids); none when it is unset.
func enqueueKeys(_ environment: [String: String]) throws -> [SigningKey] {
  guard let value = environment["FOYER_ENQUEUE_KEYS"], !value.isEmpty else { return [] }
  do { return try KeyRing(parsing: value).keys } catch { throw ValidationError("FOYER_ENQUEUE_KEYS: \(error.message)") }
}
