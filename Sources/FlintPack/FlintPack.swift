// FlintPack: work in progress.
