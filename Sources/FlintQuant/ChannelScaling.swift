// Per-channel rescalings of weight tensors. A pair of them — one channel of an operator's output times s, the
// consuming operator's input column divided by s — leaves the float function unchanged while moving activation
// range between the two: SmoothQuant folds activation outliers into weights this way, and the outlier test
// fixtures (Tools/make_outlier_fixtures.py) create outliers the same way.

import FlintFormat

/// One channel of one tensor multiplied or divided by a factor, in float32.
public struct ChannelScaling: Sendable, Equatable, Codable {
    /// Which slice of the tensor the channel is.
    public enum Axis: String, Sendable, Codable {
        /// Element `channel` of a 1-D tensor (a layer-norm weight).
        case element
        /// Row `channel` of a 2-D `[out, in]` weight: output channel `channel`.
        case row
        /// Column `channel` of a 2-D `[out, in]` weight: input channel `channel`.
        case column
    }

    public enum Operation: String, Sendable, Codable {
        case multiply
        case divide
    }

    public var tensor: String
    public var axis: Axis
    public var channel: Int
    public var op: Operation
    public var factor: Float

    public init(tensor: String, axis: Axis, channel: Int, op: Operation, factor: Float) {
        self.tensor = tensor
        self.axis = axis
        self.channel = channel
        self.op = op
        self.factor = factor
    }

    /// Applies the scaling to `values`, a float32 tensor of `shape` (row-major). Each element is one exactly
    /// rounded IEEE multiply or divide, so the result is the same on every machine and in numpy.
    public func apply(to values: UnsafeMutableBufferPointer<Float>, shape: [Int]) throws {
        let count = shape.reduce(1, *)
        guard values.count == count else {
            throw FlintError("channel scaling of \(tensor): \(values.count) values for shape \(shape)")
        }
        try apply(to: values, shape: shape, firstRow: 0)
    }

    /// Applies the scaling to a slab of a 2-D tensor of `shape`: `values` holds rows `firstRow ..<
    /// firstRow + values.count / shape[1]`. Every element gets the same float32 operation as when the whole
    /// tensor is scaled (a row scaling whose row lies outside the slab leaves it untouched), so scaling a
    /// tensor slab by slab gives the same bits. For a 1-D tensor `firstRow` must be 0 and `values` whole.
    public func apply(to values: UnsafeMutableBufferPointer<Float>, shape: [Int], firstRow: Int) throws {
        guard factor.isFinite, factor != 0 else {
            throw FlintError("channel scaling of \(tensor): factor \(factor) is not a finite non-zero number")
        }
        let count = values.count
        let indices: StrideTo<Int>
        switch axis {
        case .element:
            guard shape.count == 1, channel >= 0, channel < shape[0] else {
                throw FlintError("channel scaling of \(tensor): element \(channel) does not exist in shape \(shape)")
            }
            guard firstRow == 0, count == shape[0] else {
                throw FlintError("channel scaling of \(tensor): a 1-D tensor is scaled whole, got \(count) values at row \(firstRow) for shape \(shape)")
            }
            indices = stride(from: channel, to: channel + 1, by: 1)
        case .row, .column:
            guard shape.count == 2, shape[1] > 0 || count == 0, firstRow >= 0,
                  shape[1] == 0 || (count % shape[1] == 0 && firstRow + count / shape[1] <= shape[0]) else {
                throw FlintError("channel scaling of \(tensor): \(count) values at row \(firstRow) are not whole rows of shape \(shape)")
            }
            if axis == .row {
                guard channel >= 0, channel < shape[0] else {
                    throw FlintError("channel scaling of \(tensor): row \(channel) does not exist in shape \(shape)")
                }
                let rows = shape[1] == 0 ? 0 : count / shape[1]
                guard channel >= firstRow, channel < firstRow + rows else { return }
                let r = channel - firstRow
                indices = stride(from: r * shape[1], to: (r + 1) * shape[1], by: 1)
            } else {
                guard channel >= 0, channel < shape[1] else {
                    throw FlintError("channel scaling of \(tensor): column \(channel) does not exist in shape \(shape)")
                }
                indices = stride(from: channel, to: count, by: shape[1])
            }
        }
        let s = factor
        switch op {
        case .multiply: for i in indices { values[i] = values[i] * s }
        case .divide: for i in indices { values[i] = values[i] / s }
        }
    }
}

extension Array where Element == ChannelScaling {
    /// The scalings grouped by tensor, each group in its original order.
    public func byTensor() -> [String: [ChannelScaling]] {
        Dictionary(grouping: self, by: \.tensor)
    }
}

extension SmoothingSummary {
    /// The channel scalings a .flint file's `calibration.smoothing` records, in the order conversion applied
    /// them: applied to the original float weights they give the smoothed float model the file was quantized
    /// from, bit for bit (Formats/FLINT.md, `calibration`).
    public func channelScalings() throws -> [ChannelScaling] {
        var scalings: [ChannelScaling] = []
        for fold in folds {
            guard let axis = ChannelScaling.Axis(rawValue: fold.producerAxis), axis != .column else {
                throw FlintError("smoothing fold of \(fold.producer): unknown producer_axis \"\(fold.producerAxis)\"")
            }
            for (j, s) in fold.scales.enumerated() where s != 1 {
                scalings.append(ChannelScaling(tensor: fold.producer, axis: axis, channel: j, op: .divide, factor: s))
                for consumer in fold.consumers {
                    scalings.append(ChannelScaling(tensor: consumer, axis: .column, channel: j, op: .multiply, factor: s))
                }
            }
        }
        return scalings
    }
}
