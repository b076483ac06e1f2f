// FlintTokenizer: work in progress.
