// `flint embed`: the encoder's last hidden state of a text, and its mean over tokens (a sentence embedding).
import ArgumentParser
import Foundation
import FlintFormat
import FlintKernels
import FlintT5

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Encode a text: the encoder's last hidden state and its mean over tokens.",
        discussion: helpDiscussion("""
        Works with encoder-only models (T5EncoderModel) and with encoder-decoder models (the decoder is not \
        loaded). Without --json the mean embedding is printed as one line of numbers; --json prints \
        {"text", "input_ids", "last_hidden_state" [tokens][d_model], "mean" [d_model]}.

        Examples:
          flint embed ./t5-encoder "A sentence to embed."
          flint embed ./flan-t5-small "A sentence to embed." --json | jq '.mean \\
              | length'
        """))

    @Argument(help: "A .flint file, a Hugging Face model folder, or hf:OWNER/NAME[@REVISION].")
    var model: String

    @Argument(help: "The text to encode (</s> is appended, like the Hugging Face tokenizer does).")
    var text: String

    @OptionGroup var kernelOptions: KernelOptions

    @Flag(help: "Print the token states and the mean as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let weights = try loadWeights(path: model)
            let tokenizer = try loadTokenizer(weights)
            let encoder = try T5EncoderModel(weights: weights, pool: kernelOptions.makePool(),
                                             int8Kernels: kernelOptions.mode(for: weights))
            let inputIds = tokenizer.encode(text)
            let output = try encoder.encode(inputIds)
            let mean = output.meanOverTokens
            if json {
                let rows = (0..<output.length).map { Array(output.row($0)) }
                let value = EmbedJSON(text: text, input_ids: inputIds, last_hidden_state: rows, mean: mean)
                let jsonEncoder = JSONEncoder()
                jsonEncoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
                FileHandle.standardOutput.write(try jsonEncoder.encode(value) + Data("\n".utf8))
            } else {
                print(mean.map { String($0) }.joined(separator: " "))
            }
        }
    }
}

struct EmbedJSON: Encodable {
    let text: String
    let input_ids: [Int]
    let last_hidden_state: [[Float]]
    let mean: [Float]
}
