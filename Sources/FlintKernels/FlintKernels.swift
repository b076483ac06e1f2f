// FlintKernels: work in progress.
