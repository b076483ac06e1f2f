// Memory for tensors a reader cannot view in place (transposed Keras / Flax kernels, unaligned data): each copy
// gets its own anonymous mapping, owned by the TensorView handed out.
import Foundation
import FlintFormat

/// Memory holding one materialised tensor: its own anonymous, page-aligned mapping, because the converter
/// calls `releaseMappedPages` (madvise DONTNEED) on every view once it is done with it, and on heap memory that
/// would also wipe whatever shares the first and last page. Unmapped when the last TensorView that owns it goes.
final class TensorBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
    let count: Int
    private let mapped: Int

    init(byteCount: Int) throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let (rounded, overflow) = byteCount.addingReportingOverflow(page - 1)
        guard !overflow else { throw FlintError(.io, "cannot allocate \(byteCount) bytes for a tensor copy") }
        mapped = max(page, rounded / page * page)
        let p = mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else {
            throw FlintError(.io, "cannot allocate \(byteCount) bytes for a tensor copy (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeMutableRawBufferPointer(start: p, count: byteCount)
        count = byteCount
    }

    convenience init(copying source: UnsafeRawBufferPointer) throws {
        try self.init(byteCount: source.count)
        if source.count > 0 { bytes.copyMemory(from: source) }
    }

    var readOnly: UnsafeRawBufferPointer { UnsafeRawBufferPointer(bytes) }

    /// A view of `bytes` (a slice of a reader's mapped file) in place when its elements are aligned, else of an
    /// aligned copy that the view owns; the file pages the copy was made from are released, so a streaming
    /// conversion of an unaligned checkpoint does not keep the whole file resident.
    static func view(name: String, storage: StorageType, shape: [Int], bytes: UnsafeRawBufferPointer,
                     owner: AnyObject) throws -> TensorView {
        guard let base = bytes.baseAddress, Int(bitPattern: base) % storage.byteSize != 0 else {
            return TensorView(name: name, storage: storage, shape: shape, data: bytes, owner: owner)
        }
        let copy = try TensorBuffer(copying: bytes)
        releaseMappedPages(bytes)
        return TensorView(name: name, storage: storage, shape: shape, data: copy.readOnly, owner: copy)
    }

    deinit { munmap(bytes.baseAddress, mapped) }
}
