/// `count` bytes from the system CSPRNG (`SystemRandomNumberGenerator`: getrandom(2) on
/// Linux). Eight bytes per call to the generator: drawing one `UInt8` at a time costs a
/// system call per byte, 16 for a session ID.
public func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 7)
    while bytes.count < count {
        withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) }
    }
    bytes.removeLast(bytes.count - count)
    return bytes
}
