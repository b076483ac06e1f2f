import FlintCLI
FlintCommand.main()
