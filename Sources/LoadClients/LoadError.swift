/// A load client's failure, as text for the benchmark's output.
package struct LoadError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
