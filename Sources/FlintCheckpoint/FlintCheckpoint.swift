// FlintCheckpoint: work in progress.
