import FlintServe
