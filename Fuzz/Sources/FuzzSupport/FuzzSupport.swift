/// FuzzInput reads a fuzzer's bytes as the choices a stateful harness makes. Past the end it
/// reads zeros, so every input is a complete program and a longer one only adds steps.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ start: UnsafeRawPointer, _ count: Int) {
        bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    }

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var isEmpty: Bool { offset >= bytes.count }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    public mutating func u16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    public mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }

    /// A value below `bound` (at least 1).
    public mutating func below(_ bound: Int) -> Int { Int(byte()) % max(bound, 1) }

    /// Up to `limit` bytes: a length byte, then that many (fewer at the end of the input).
    public mutating func blob(limit: Int = 255) -> [UInt8] {
        let count = min(Int(byte()), limit, bytes.count - min(offset, bytes.count))
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return offset < bytes.count ? Array(bytes[offset...]) : []
    }
}

/// A broken invariant: the fuzzer records the input as a crash.
public func violated(_ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) -> Never {
    fatalError("invariant: \(message())", file: file, line: line)
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafeRawPointer, Int) -> CInt
) -> CInt

/// Hands control to libFuzzer's driver. SwiftPM links an executable's entry point as
/// `<Target>_main`; each target defines that and calls this (libFuzzer's own `main` is not used).
public func runFuzzer(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                      _ callback: @convention(c) (UnsafeRawPointer, Int) -> CInt) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, callback)
}
