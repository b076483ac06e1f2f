// FlintVerify: work in progress.
