// FlintConvert: work in progress.
