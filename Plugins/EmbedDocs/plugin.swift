import Foundation
import PackagePlugin

/// Embeds the files a target serves over HTTP (see `served`) as `EmbeddedFiles.NAME`.
@main
struct EmbedDocs: BuildToolPlugin {
    /// What each target serves: Swift name → path in the package.
    static let served: [String: [(name: String, path: String)]] = [
        "Rendezvous": [("openAPIYAML", "docs/openapi.yaml"), ("playHTML", "web/play.html")],
    ]

    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let files = Self.served[target.name] ?? []
        let inputs = files.map { context.package.directoryURL.appending(path: $0.path) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedFiles.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(files.map(\.path).joined(separator: ", ")) into \(target.name)",
                executable: try context.tool(named: "file-embedder").url,
                arguments: [output.path] + zip(files, inputs).map { "\($0.name)=\($1.path)" },
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}
