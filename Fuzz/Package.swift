// swift-tools-version: 6.2
// libFuzzer target for the Wire codecs: `make fuzz` (and briefly, `make test`).
import PackageDescription

let package = Package(
    name: "switchboard-fuzz",
    dependencies: [
        .package(name: "switchboard", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "WireFuzz",
            dependencies: [
                .product(name: "Wire", package: "switchboard"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ],
    swiftLanguageModes: [.v6]
)
