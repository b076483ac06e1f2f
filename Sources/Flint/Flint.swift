// `import Flint` is the whole library: the high-level `FlintModel` defined here, and every public module
// re-exported, so a program that needs the lower layers (the .flint reader, the converter, the T5 engine,
// the kernels) reaches them without importing each.

@_exported import FlintFormat
@_exported import FlintCheckpoint
@_exported import FlintQuant
@_exported import FlintConvert
@_exported import FlintPack
@_exported import FlintHub
@_exported import FlintTokenizer
@_exported import FlintKernels
@_exported import FlintT5
@_exported import FlintVerify
@_exported import FlintCalibration
@_exported import FlintRecipe
