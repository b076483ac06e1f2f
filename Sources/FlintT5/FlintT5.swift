// FlintT5: work in progress.
