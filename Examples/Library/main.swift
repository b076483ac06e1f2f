import Flint
import Foundation

// flint-library-example FOLDER FILE.flint: converts a Hugging Face T5 folder to int8 once, then opens the
// .flint file (memory-mapped, int8 weights in place) and generates.
let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    print("usage: flint-library-example MODEL-FOLDER FILE.flint")
    exit(64)
}
let (folder, file) = (arguments[1], arguments[2])
if !FileManager.default.fileExists(atPath: file) {
    _ = try Converter.convert(source: folder, output: file, options: ConvertOptions(quant: .int8(.int8Row)))
}
let model = try FlintModel(contentsOf: URL(fileURLWithPath: file))

// The whole answer at once …
print(try model.generate("reverse: red apple blue"))

// … several prompts in one batch …
for text in try model.generate(["reverse: cat dog", "reverse: one two three"]) {
    print(text)
}

// … or word by word as it is generated.
for try await piece in model.stream("reverse: sun moon star") {
    print(piece, terminator: "")
}
print()
