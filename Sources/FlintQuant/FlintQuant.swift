// FlintQuant: work in progress.
